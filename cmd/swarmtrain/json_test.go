package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/internal/buildinfo"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/node/device"
	"github.com/swarmtrain/swarmtrain/trainer"
)

var snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// badKeys lists the object keys in JSON value v that are not snake_case.
func badKeys(v any, path string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !snake.MatchString(k) {
				*out = append(*out, path+"."+k)
			}
			badKeys(x, path+"."+k, out)
		}
	case []any:
		for _, x := range v {
			badKeys(x, path+"[]", out)
		}
	}
}

// badTags lists the exported fields of t (and the types inside it) whose
// JSON name is not snake_case: a field with no tag is its Go name.
func badTags(t reflect.Type, path string, seen map[reflect.Type]bool, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			badTags(f.Type, path, seen, out)
			continue
		}
		if name == "" {
			name = f.Name
		}
		if !snake.MatchString(name) {
			*out = append(*out, path+"."+f.Name+" ("+name+")")
		}
		badTags(f.Type, path+"."+name, seen, out)
	}
}

// Every --json output is snake_case: the commands cheap enough are run,
// the rest (a node's result, a demo's, doctor's, sweep's, /status) are
// checked through their types.
func TestJSONSnakeCase(t *testing.T) {
	for _, args := range [][]string{
		{"devices", "--json"},
		{"version", "--json"},
		{"bench", "allreduce", "--json", "--hosts", "2", "--mib", "0.01", "--rounds", "1"},
		{"bench", "compress", "--json", "--millions", "0.01", "--reps", "1"},
	} {
		var out bytes.Buffer
		if err := execute(args, nil, &out); err != nil {
			t.Errorf("%s: %v", strings.Join(args, " "), err)
			continue
		}
		var v any
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Errorf("%s printed no JSON: %v\n%s", strings.Join(args, " "), err, out.String())
			continue
		}
		var bad []string
		badKeys(v, "", &bad)
		if len(bad) > 0 {
			t.Errorf("%s: keys not snake_case: %v", strings.Join(args, " "), bad)
		}
	}
	for _, v := range []any{
		node.Result{}, demoResult{}, doctorReport{}, trialResult{}, node.Status{},
		device.Info{}, node.AllReduceBenchResult{}, compression.Measurement{}, trainer.StepTiming{}, buildinfo.Info{},
	} {
		var bad []string
		typ := reflect.TypeOf(v)
		badTags(typ, typ.String(), map[reflect.Type]bool{}, &bad)
		if len(bad) > 0 {
			t.Errorf("%s: JSON names not snake_case: %v", typ, bad)
		}
	}
}
