package node

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// A run config as data: one canonical encoding, which the run ID hashes
// and every writer uses (run config files, checkpoints, the hello, sweep
// trials), and one reader, which knows every version since the first.
//
// The canonical encoding is JSON without insignificant whitespace: every
// field of RunConfig and its sections, in declaration order, under its
// json name; no field is ever left out, whatever the tag's options say
// (omitempty is ignored), so a run ID never rests on which fields happen
// to be zero. The one exception is explicit: a field added after version
// 2 with the tag canon:"omit=V" is left out while it holds V or "" (the
// value that keeps the behaviour from before it), so runs that do not use
// it keep their IDs and still match peers of builds before it. Lists are [...] (nil and empty alike); strings and numbers
// are as encoding/json writes them (a float32 in the shortest form that
// reads back to the same value; -0 as 0). The version comes first, so
// configs of two layouts never encode alike.
//
// Changing the encoding (a field added, removed or renamed) changes every
// run ID. It takes a new RunConfigVersion and a case in UnmarshalJSON that
// reads the version before (for a field added: as the current version,
// with the new field at the value that keeps the old behaviour), so files
// and checkpoints written before still load.

// maxRunConfigBytes bounds a run config file: a real one is a few hundred
// bytes (a long freeze list a few KiB).
const maxRunConfigBytes = 1 << 20

// JSON is the canonical encoding the run ID is hashed from.
func (r RunConfig) JSON() json.RawMessage {
	return appendCanonical(nil, reflect.ValueOf(r))
}

// ID is the run ID: the first 16 bytes of SHA-256 of the canonical
// encoding, in hex.
func (r RunConfig) ID() string {
	sum := sha256.Sum256(r.JSON())
	return hex.EncodeToString(sum[:16])
}

// MarshalJSON writes the canonical encoding: what is written is what the
// run ID hashes.
func (r RunConfig) MarshalJSON() ([]byte, error) { return r.JSON(), nil }

// appendCanonical appends v's canonical encoding. RunConfig holds only
// structs, slices, strings, numbers and bools; any other kind is a programming
// error that the tests catch.
func appendCanonical(b []byte, v reflect.Value) []byte {
	switch v.Kind() {
	case reflect.Struct:
		b = append(b, '{')
		for i := range v.NumField() {
			if omitted(v, i) {
				continue
			}
			if b[len(b)-1] != '{' {
				b = append(b, ',')
			}
			name := jsonName(v.Type().Field(i))
			b = append(b, '"')
			b = append(b, name...)
			b = append(b, '"', ':')
			b = appendCanonical(b, v.Field(i))
		}
		return append(b, '}')
	case reflect.Slice:
		b = append(b, '[')
		for i := range v.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, v.Index(i))
		}
		return append(b, ']')
	case reflect.String, reflect.Int, reflect.Uint64, reflect.Float32, reflect.Bool:
		if v.Kind() == reflect.Float32 && v.Float() == 0 {
			return append(b, '0') // -0 too: one run, one encoding
		}
		leaf, err := json.Marshal(v.Interface())
		if err != nil { // NaN or ±Inf, which Validate refuses: still one encoding each
			leaf, _ = json.Marshal(fmt.Sprint(v.Interface()))
		}
		return append(b, leaf...)
	}
	panic(fmt.Sprintf("node: a RunConfig field of kind %s has no canonical encoding", v.Kind()))
}

// omitted reports whether field i of struct v is left out of the
// canonical encoding: a string field tagged canon:"omit=V" holding V or
// "", an int field tagged canon:"omit=0" holding 0, a bool field tagged
// canon:"omit=false" holding false, or a field tagged
// canon:"omitwith=F" while its sibling field F is left out (the DiLoCo
// fields go with averaging.mode: a sync run writes none of them, whatever
// they hold, and keeps its run ID).
func omitted(v reflect.Value, i int) bool {
	f := v.Type().Field(i)
	tag, ok := f.Tag.Lookup("canon")
	if !ok {
		return false
	}
	if name, ok := strings.CutPrefix(tag, "omitwith="); ok {
		j, found := v.Type().FieldByName(name)
		if !found || len(j.Index) != 1 {
			panic(fmt.Sprintf("node: RunConfig field %s has canon tag %q, and its struct no field %s", f.Name, tag, name))
		}
		return omitted(v, j.Index[0])
	}
	def, ok := strings.CutPrefix(tag, "omit=")
	fv := v.Field(i)
	switch {
	case ok && fv.Kind() == reflect.String:
		return fv.String() == "" || fv.String() == def
	case ok && fv.Kind() == reflect.Int && def == "0":
		return fv.Int() == 0
	case ok && fv.Kind() == reflect.Bool && def == "false":
		return !fv.Bool()
	}
	panic(fmt.Sprintf("node: RunConfig field %s has canon tag %q, want omit=VALUE on a string, omit=0 on an int, omit=false on a bool or omitwith=FIELD", f.Name, tag))
}

// jsonName is a run config field's key: its json tag's name. Every field
// has one (the tests check), or it could not be written to a file.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if !f.IsExported() || name == "" || name == "-" || strings.ContainsAny(name, `"\.`) {
		panic(fmt.Sprintf("node: RunConfig field %s needs a json name", f.Name))
	}
	return name
}

// RunField is one leaf of a run config: its path in the file
// (optimizer.lr) and a pointer to it (*string, *int, *uint64, *float32,
// *[]int or *[]string).
type RunField struct {
	Path string
	Ptr  any
}

// Fields lists r's leaves in encoding order, with pointers into r.
func (r *RunConfig) Fields() []RunField {
	var out []RunField
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for i := range v.NumField() {
			name := jsonName(v.Type().Field(i))
			f := v.Field(i)
			if f.Kind() == reflect.Struct {
				walk(f, prefix+name+".")
				continue
			}
			out = append(out, RunField{Path: prefix + name, Ptr: f.Addr().Interface()})
		}
	}
	walk(reflect.ValueOf(r).Elem(), "")
	return out
}

// UnmarshalJSON reads a run config of any version this build knows and
// converts it to the current one; a version it does not know is refused
// with the version, and which this build reads. In a version-2 document
// an unknown field is an error, and a field left out takes its
// DefaultRunConfig value. A document without "version" is version 1: the
// flat layout from before sections, written by every earlier build into
// its checkpoints and hellos.
func (r *RunConfig) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil // encoding/json's convention: null leaves the value alone
	}
	var head struct {
		Version json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("run config: want a JSON object: %w", err)
	}
	version := 1
	if head.Version != nil {
		if err := json.Unmarshal(head.Version, &version); err != nil {
			return fmt.Errorf("run config: version %s is not a whole number; this build reads versions 1 to %d", head.Version, RunConfigVersion)
		}
	}
	switch {
	case version == RunConfigVersion:
		c := DefaultRunConfig()
		if err := unknownKeys(b, reflect.TypeFor[RunConfig](), ""); err != nil {
			return fmt.Errorf("run config (version %d): %w", version, err)
		}
		if err := decodeStrict(b, (*plainRunConfig)(&c)); err != nil {
			return fmt.Errorf("run config (version %d): %w", version, err)
		}
		*r = c
	case version == 1:
		var old runConfigV1
		if err := decodeStrict(b, &old); err != nil {
			how := "version 1"
			if head.Version == nil {
				how = fmt.Sprintf(`no "version" field, so read as version 1 (the flat layout before sections; a file in this build's layout starts with "version": %d)`, RunConfigVersion)
			}
			return fmt.Errorf("run config: %s: %w", how, err)
		}
		*r = old.convert()
	case version > RunConfigVersion:
		return fmt.Errorf("run config: version %d is newer than this build, which reads versions 1 to %d: use a newer swarmtrain", version, RunConfigVersion)
	default:
		return fmt.Errorf("run config: version %d does not exist; this build reads versions 1 to %d", version, RunConfigVersion)
	}
	return nil
}

// plainRunConfig decodes without RunConfig's UnmarshalJSON.
type plainRunConfig RunConfig

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// unknownKeys names the first key of the JSON object b that struct type t
// lacks, by its path, with the keys t has.
func unknownKeys(b []byte, t reflect.Type, prefix string) error {
	var doc map[string]json.RawMessage
	if json.Unmarshal(b, &doc) != nil {
		return nil // not an object: decoding says what it is instead
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		name := jsonName(t.Field(i))
		fields[name] = t.Field(i).Type
		names = append(names, name)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ft, ok := fields[k]
		switch {
		case !ok:
			where := "the run config"
			if prefix != "" {
				where = strings.TrimSuffix(prefix, ".")
			}
			return fmt.Errorf("unknown field %s%s: %s has %s", prefix, k, where, strings.Join(names, ", "))
		case ft.Kind() == reflect.Struct:
			if err := unknownKeys(doc[k], ft, prefix+k+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// runConfigV1 is version 1: the flat RunConfig of the builds before
// sections. Fields it left out of its JSON (omitempty) were zero.
type runConfigV1 struct {
	Version     int      `json:"version"` // absent, or 1
	Dataset     string   `json:"dataset"`
	Hidden      []int    `json:"hidden"`
	Batch       int      `json:"batch"`
	TargetBatch int      `json:"target_batch"`
	Optimizer   string   `json:"optimizer"`
	LR          float32  `json:"lr"`
	Momentum    float32  `json:"momentum"`
	WeightDecay float32  `json:"weight_decay"`
	Warmup      int      `json:"warmup"`
	Steps       int      `json:"steps"`
	Seed        uint64   `json:"seed"`
	Codec       string   `json:"codec"`
	Lossless    string   `json:"lossless"`
	MinGroup    int      `json:"min_group"`
	MaxGroup    int      `json:"max_group"`
	Schedule    string   `json:"schedule"` // "": cosine
	ClipNorm    float32  `json:"clip_norm"`
	InitFrom    string   `json:"init_from"`
	Freeze      []string `json:"freeze"`
	Model       string   `json:"model"` // "": mlp
	Channels    []int    `json:"channels"`
	Data        string   `json:"data"`
	Vocab       string   `json:"vocab"`
	VocabSize   int      `json:"vocab_size"`
	Seq         int      `json:"seq"`
	Width       int      `json:"width"`
	Heads       int      `json:"heads"`
	Layers      int      `json:"layers"`
	Dropout     float32  `json:"dropout"`
	TrainRows   int      `json:"train_rows"`
}

// convert is the same run in the current layout. Version 1 spelled the
// MLP and the cosine schedule as "" (so that older runs kept their IDs);
// version 2 names them.
func (o runConfigV1) convert() RunConfig {
	return RunConfig{
		Version: RunConfigVersion,
		Seed:    o.Seed,
		Model: RunModel{Kind: cmp.Or(o.Model, trainer.ArchMLP), Hidden: o.Hidden, Channels: o.Channels,
			Width: o.Width, Heads: o.Heads, Layers: o.Layers, Dropout: o.Dropout, VocabSize: o.VocabSize, Seq: o.Seq,
			InitFrom: o.InitFrom, Freeze: o.Freeze},
		Data: RunData{Dataset: o.Dataset, Files: o.Data, Vocab: o.Vocab, TrainRows: o.TrainRows},
		Optimizer: RunOptimizer{Name: o.Optimizer, LR: o.LR, Momentum: o.Momentum, WeightDecay: o.WeightDecay,
			Warmup: o.Warmup, Schedule: cmp.Or(o.Schedule, string(trainer.DecayCosine)), ClipNorm: o.ClipNorm,
			Steps: o.Steps, TargetBatch: o.TargetBatch},
		Averaging: RunAveraging{Codec: o.Codec, Lossless: o.Lossless, MinGroup: o.MinGroup, MaxGroup: o.MaxGroup, Aggregate: "mean",
			Mode: ModeSync, OuterLR: DefaultOuterLR, OuterMomentum: DefaultOuterMomentum},
		Compute: RunCompute{Batch: o.Batch},
	}
}

// DecodeRunConfig reads a run config of any version this build knows
// (UnmarshalJSON); a syntax error names its line and column.
func DecodeRunConfig(b []byte) (RunConfig, error) {
	var r RunConfig
	switch string(bytes.TrimSpace(b)) {
	case "":
		return r, errors.New("run config: empty")
	case "null":
		return r, errors.New("run config: null, want an object")
	}
	err := json.Unmarshal(b, &r)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(b[:se.Offset], []byte("\n"))
		col := se.Offset - int64(bytes.LastIndexByte(b[:se.Offset], '\n')) - 1
		return r, fmt.Errorf("run config: line %d, column %d: %w", line, col, err)
	}
	return r, err
}

// LoadRunConfig reads a run config file (DecodeRunConfig). It does not
// validate: flags may still change the run, and a text run's hashes come
// from its files.
func LoadRunConfig(path string) (RunConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return RunConfig{}, err
	}
	if len(b) > maxRunConfigBytes {
		return RunConfig{}, fmt.Errorf("%s: %d bytes, more than a run config's %d", path, len(b), maxRunConfigBytes)
	}
	r, err := DecodeRunConfig(b)
	if err != nil {
		return RunConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// WriteRunConfig writes r to path, indented, atomically.
func WriteRunConfig(path string, r RunConfig) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, r.JSON(), "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	return atomicfile.Write(path, buf.Bytes())
}
