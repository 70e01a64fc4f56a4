package clip

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
)

// TestFullSizeKeys builds both full-size encoders from the real configs (meta
// tensors only) and checks every parameter name and shape against the key
// lists of the real SDXL repos (transformers 4 naming), and the total
// parameter count against the published 817,720,320.
func TestFullSizeKeys(t *testing.T) {
	var total int64
	for _, c := range []struct {
		file string
		cfg  *config.TextEncoderConfig
	}{
		{"full-keys/sdxl-text-encoder.json", config.SDXLTextEncoder()},
		{"full-keys/sdxl-text-encoder-2.json", config.SDXLTextEncoder2()},
	} {
		data, err := os.ReadFile(golden.Path(t, c.file))
		if err != nil {
			t.Fatal(err)
		}
		var want map[string][]int
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		m, err := New(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, p := range nn.Params(m, "") {
			key := p.Name
			if key != "text_projection.weight" {
				key = textModelPrefix + key
			}
			got[key] = true
			shape, ok := want[key]
			if !ok {
				t.Errorf("%s: parameter %q is not in the real checkpoint", c.file, key)
				continue
			}
			if !p.Tensor().Shape().Equal(shape) {
				t.Errorf("%s: %q has shape %v, real %v", c.file, key, p.Tensor().Shape(), shape)
			}
		}
		for k := range want {
			if !got[k] {
				t.Errorf("%s: real key %q has no parameter", c.file, k)
			}
		}
		n := nn.CountParams(m)
		t.Logf("%s: %d keys, %d parameters", c.file, len(want), n)
		total += n
	}
	if total != 817_720_320 {
		t.Errorf("both encoders have %d parameters, want 817,720,320", total)
	}
}
