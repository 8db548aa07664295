package trainer

import (
	"fmt"
	"strconv"
	"strings"
)

// TorchLayout returns a model's tensors as PyTorch modules hold them:
// every dense weight (stored in×out, for x·W) transposed to torch.nn.Linear's
// out×in, and, for the MLP and the CNN, the names an nn.Sequential gives
// its layers, so load_state_dict takes the file as it is:
//
//	mlp: nn.Sequential(Linear(784,h1), ReLU(), Linear(h1,h2), ReLU(), …, Linear(hN,10))
//	     layers.K.weight → (2K).weight, layers.K.bias → (2K).bias
//	cnn: per conv block i: Conv2d(c,o,5,padding=2), ReLU(), MaxPool2d(2);
//	     then Flatten(), then the fc layers as the MLP's
//	     conv.i.* → (3i).*, fc.K.* → (3B+1+2K).* with B blocks
//	bert: names unchanged (embed.*, layers.L.attn.{query,key,value,out}.*,
//	     layers.L.ff.{1,2}.*, head.*); the Linear weights transposed, the
//	     embeddings (rows×width) and norms as they are. The modules are
//	     ours, not Hugging Face's: a PyTorch model must be written to match.
//
// arch is the model's ModelConfig.Arch. tensors and params are a
// checkpoint's (params laid out by tensors); both are returned anew.
func TorchLayout(arch string, tensors []Tensor, params []float32) ([]Tensor, []float32, error) {
	var rename func(string) (string, error)
	switch arch {
	case "", ArchMLP:
		rename = func(name string) (string, error) { return sequentialName(name, "layers.", 0, 2) }
	case ArchCNN:
		blocks := 0
		for _, t := range tensors {
			if strings.HasPrefix(t.Name, "conv.") && strings.HasSuffix(t.Name, ".weight") {
				blocks++
			}
		}
		rename = func(name string) (string, error) {
			if strings.HasPrefix(name, "conv.") {
				return sequentialName(name, "conv.", 0, 3)
			}
			return sequentialName(name, "fc.", 3*blocks+1, 2)
		}
	case ArchBERT:
		rename = func(name string) (string, error) { return name, nil }
	default:
		return nil, nil, fmt.Errorf("torch layout: unknown model %q", arch)
	}
	outT := make([]Tensor, 0, len(tensors))
	outP := make([]float32, 0, len(params))
	off := 0
	for _, t := range tensors {
		n := t.Size()
		if n <= 0 || off+n > len(params) {
			return nil, nil, fmt.Errorf("torch layout: tensor %q %v does not fit the %d parameters", t.Name, t.Shape, len(params))
		}
		vals := params[off : off+n]
		off += n
		name, err := rename(t.Name)
		if err != nil {
			return nil, nil, err
		}
		shape := append([]int(nil), t.Shape...)
		if len(shape) == 2 && strings.HasSuffix(t.Name, ".weight") {
			// A dense weight: in×out here, out×in in torch.nn.Linear.
			in, out := shape[0], shape[1]
			shape = []int{out, in}
			for o := range out {
				for i := range in {
					outP = append(outP, vals[i*out+o])
				}
			}
		} else {
			outP = append(outP, vals...)
		}
		outT = append(outT, Tensor{Name: name, Shape: shape})
	}
	if off != len(params) {
		return nil, nil, fmt.Errorf("torch layout: tensors cover %d of %d parameters", off, len(params))
	}
	return outT, outP, nil
}

// sequentialName turns prefix.K.rest into (first+stride·K).rest: the K-th
// layer of ours as its index in an nn.Sequential.
func sequentialName(name, prefix string, first, stride int) (string, error) {
	rest, ok := strings.CutPrefix(name, prefix)
	k, tail, ok2 := strings.Cut(rest, ".")
	i, err := strconv.Atoi(k)
	if !ok || !ok2 || err != nil || i < 0 {
		return "", fmt.Errorf("torch layout: tensor %q is not %sK.weight or %sK.bias", name, prefix, prefix)
	}
	return strconv.Itoa(first+stride*i) + "." + tail, nil
}
