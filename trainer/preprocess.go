package trainer

import (
	"fmt"
	"strings"
)

// Preprocess is everything another program needs to prepare an input the
// way the model was trained: checkpoints and exports carry it in their
// metadata, so a model file is usable without this source at hand.
type Preprocess struct {
	// Kind is "image" or "text".
	Kind string `json:"kind"`
	// Image inputs: Channels×Height×Width, channel-major (CHW; RGB order
	// for 3 channels, grey for 1), scaled to [0,1] then (x−Mean[c])/Std[c].
	// Resize says how a picture of another size was brought to it.
	Channels int       `json:"channels,omitempty"`
	Height   int       `json:"height,omitempty"`
	Width    int       `json:"width,omitempty"`
	Resize   string    `json:"resize,omitempty"`
	Mean     []float64 `json:"mean,omitempty"`
	Std      []float64 `json:"std,omitempty"`
	// Flatten is true when the model takes the image as one vector (the
	// mlp) rather than C×H×W (the cnn).
	Flatten bool `json:"flatten,omitempty"`
	// Text inputs: WordPiece over Vocab (one token a line, as vocab.txt;
	// BERT's uncased cleaning), [CLS] tokens [SEP] padded with [PAD] (id 0)
	// to Seq ids.
	Vocab string `json:"vocab,omitempty"`
	Seq   int    `json:"seq,omitempty"`
	// Labels names the classes in output order.
	Labels []string `json:"labels,omitempty"`
}

// resizeRule is how LoadImageFolder brings an image to the model's size.
const resizeRule = "shorter side scaled to the size (bicubic), centre square cropped, transparent over black"

// ImagePreprocess records how ds's image rows were made (flatten: the
// model takes a vector).
func ImagePreprocess(ds *Dataset, flatten bool) (*Preprocess, error) {
	if ds.Pix == nil || ds.Norm == nil || ds.Shape == nil {
		return nil, fmt.Errorf("preprocess: dataset %q has no image pixels", ds.Name)
	}
	p := &Preprocess{Kind: "image", Channels: ds.Shape[0], Height: ds.Shape[1], Width: ds.Shape[2],
		Mean: ds.Norm.Mean, Std: ds.Norm.Std, Flatten: flatten, Labels: ds.Labels}
	if ds.Resized {
		p.Resize = resizeRule
	}
	return p, nil
}

// TextPreprocess records a text model's input: its vocabulary file's
// contents, the sequence length and the class names.
func TextPreprocess(vocab []byte, seq int, labels []string) *Preprocess {
	return &Preprocess{Kind: "text", Vocab: string(vocab), Seq: seq, Labels: labels}
}

// PythonSnippet is a short Python program (numpy, and Pillow for images)
// that reads p from the file at path and prepares one input as x, shaped
// for the model (a batch of one), the way the node did.
func (p *Preprocess) PythonSnippet(path string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `import json, struct, numpy as np
f = open(%q, "rb"); n = struct.unpack("<Q", f.read(8))[0]
pre = json.loads(json.loads(f.read(n))["__metadata__"]["swarmtrain"])["preprocess"]
`, path)
	switch p.Kind {
	case "image":
		b.WriteString(`from PIL import Image
img = Image.open("input.png").convert("RGB" if pre["channels"] == 3 else "L")
w, h = img.size; k = min(w, h); l, t = (w - k) // 2, (h - k) // 2
img = img.crop((l, t, l + k, t + k)).resize((pre["width"], pre["height"]), Image.BICUBIC)
x = np.asarray(img, np.float32).reshape(pre["height"], pre["width"], -1).transpose(2, 0, 1) / 255
x = (x - np.array(pre["mean"]).reshape(-1, 1, 1)) / np.array(pre["std"]).reshape(-1, 1, 1)
x = x.astype(np.float32).reshape(1, -1) if pre.get("flatten") else x.astype(np.float32)[None]
`)
	case "text":
		b.WriteString(`import re, unicodedata
vocab = {t: i for i, t in enumerate(pre["vocab"].splitlines())}
def pieces(w):  # greedy longest-match WordPiece
    out, s = [], 0
    while s < len(w):
        e = len(w)
        while e > s and (("##" if s else "") + w[s:e]) not in vocab: e -= 1
        if e == s: return [vocab["[UNK]"]]
        out.append(vocab[("##" if s else "") + w[s:e]]); s = e
    return out
text = unicodedata.normalize("NFD", "Some input text.").lower()
text = "".join(c for c in text if unicodedata.category(c) != "Mn")
ids = [i for w in re.findall(r"\w+|[^\w\s]", text) for i in pieces(w)][: pre["seq"] - 2]
ids = [vocab["[CLS]"]] + ids + [vocab["[SEP]"]]
x = np.array([ids + [0] * (pre["seq"] - len(ids))], np.float32)
`)
	}
	if len(p.Labels) > 0 {
		b.WriteString(`labels = pre["labels"]  # model output k is labels[k]
`)
	}
	return b.String()
}
