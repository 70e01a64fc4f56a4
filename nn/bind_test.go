package nn

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sdxl-go/sdxl/tensor"
)

type block struct {
	Norm  *GroupNorm `st:"norm"`
	Convs []*Conv2d  `st:"convs"`
	Skip  *Conv2d    `st:"skip"` // nil: absent
	Note  string
}

type model struct {
	In     *Linear        `st:"proj_in"`
	Blocks []block        `st:"blocks"`
	Scale  *tensor.Tensor `st:"scale"`
	Hidden *Linear        `st:""`
}

func newModel() *model {
	return &model{
		In:     NewLinear(3, 4, true),
		Blocks: []block{{Norm: NewGroupNorm(2, 4, 1e-5), Convs: []*Conv2d{NewConv2d(4, 4, 3, 1, 1)}}},
		Scale:  tensor.Meta(tensor.F32, 1),
		Hidden: &Linear{Weight: tensor.Meta(tensor.F32, 2, 2)},
	}
}

func TestParamsNames(t *testing.T) {
	var got []string
	for _, p := range Params(newModel(), "m.") {
		got = append(got, p.Name+p.Tensor().Shape().String())
	}
	want := []string{
		"m.proj_in.weight[4 3]", "m.proj_in.bias[4]",
		"m.blocks.0.norm.weight[4]", "m.blocks.0.norm.bias[4]",
		"m.blocks.0.convs.0.weight[4 4 3 3]", "m.blocks.0.convs.0.bias[4]",
		"m.scale[1]", "m.weight[2 2]",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("names (-want +got):\n%s", d)
	}
	if n := CountParams(newModel()); n != 12+4+4+4+144+4+1+4 {
		t.Fatalf("CountParams = %d", n)
	}
}

type mapSource map[string][]int

func (m mapSource) Names() []string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	return n
}
func (m mapSource) Shape(name string) ([]int, bool) { s, ok := m[name]; return s, ok }
func (m mapSource) ReadFloat32(name string, dst []float32) error {
	for i := range dst {
		dst[i] = float32(i)
	}
	return nil
}

func TestLoadStrict(t *testing.T) {
	full := mapSource{}
	for _, p := range Params(newModel(), "") {
		full[p.Name] = p.Tensor().Shape()
	}
	missing := mapSource{}
	for k, v := range full {
		if k != "blocks.0.norm.bias" {
			missing[k] = v
		}
	}
	if err := Load(nil, newModel(), missing, LoadOptions{}); err == nil || !strings.Contains(err.Error(), `"blocks.0.norm.bias"`) {
		t.Errorf("missing key: err = %v", err)
	}
	extra := mapSource{"extra.weight": {1}}
	for k, v := range full {
		extra[k] = v
	}
	if err := Load(nil, newModel(), extra, LoadOptions{}); err == nil || !strings.Contains(err.Error(), `"extra.weight"`) {
		t.Errorf("unexpected key: err = %v", err)
	}
	bad := mapSource{}
	for k, v := range full {
		bad[k] = v
	}
	bad["proj_in.weight"] = []int{3, 4}
	if err := Load(nil, newModel(), bad, LoadOptions{}); err == nil || !strings.Contains(err.Error(), `"proj_in.weight" has shape [3 4]`) {
		t.Errorf("bad shape: err = %v", err)
	}
}
