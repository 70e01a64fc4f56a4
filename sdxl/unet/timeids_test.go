package unet

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
)

type timeIDCase struct {
	Name string  `json:"name"`
	O    [2]int  `json:"original_size"`
	C    [2]int  `json:"crops_coords_top_left"`
	T    [2]int  `json:"target_size"`
	RO   [2]int  `json:"o"`
	RC   [2]int  `json:"c"`
	RT   [2]int  `json:"t"`
	A    float64 `json:"a"`
	NA   float64 `json:"na"`
	NO   [2]int  `json:"no"`
	NC   [2]int  `json:"nc"`
	NT   [2]int  `json:"nt"`
}

func TestGoldenAddTimeIDs(t *testing.T) {
	g := golden.Open(t, "tiny/goldens/add_time_ids.safetensors")
	var params struct {
		Dim   int          `json:"addition_time_embed_dim"`
		Cases []timeIDCase `json:"cases"`
	}
	if err := json.Unmarshal([]byte(g.Metadata["__params__"]), &params); err != nil {
		t.Fatal(err)
	}
	if len(params.Cases) != 7 {
		t.Fatalf("%d cases, want 7", len(params.Cases))
	}
	check := func(name string, got []float32) {
		t.Helper()
		want, _ := g.Get(name)
		golden.Check(t, name, got, want, 1e-6)
	}
	for _, c := range params.Cases {
		var pos, neg []float32
		switch {
		case c.Name[:5] == "base.":
			pos, neg = BaseTimeIDs(TimeIDParams{OriginalSize: c.O, CropsTopLeft: c.C, TargetSize: c.T})
			if !cmp.Equal(pos, neg) {
				t.Errorf("%s: negative ids %v differ from %v without negative sizes", c.Name, neg, pos)
			}
		default:
			p := TimeIDParams{
				OriginalSize: c.RO, CropsTopLeft: c.RC, TargetSize: c.RT,
				NegativeOriginalSize: &c.NO, NegativeCropsTopLeft: c.NC, NegativeTargetSize: &c.NT,
				AestheticScore: c.A, NegativeAestheticScore: c.NA,
			}
			pos, neg = Img2ImgTimeIDs(p, c.Name[:8] == "refiner.")
			check(c.Name+".add_neg_time_ids", neg)
		}
		check(c.Name+".add_time_ids", pos)
		if g.Has(c.Name + ".time_embeds") {
			check(c.Name+".time_embeds", nn.Timesteps(pos, params.Dim, true, 0))
		}
	}
}

func TestBaseTimeIDsNegatives(t *testing.T) {
	no, nt := [2]int{512, 512}, [2]int{768, 1024}
	p := TimeIDParams{OriginalSize: [2]int{1024, 1024}, CropsTopLeft: [2]int{8, 16}, TargetSize: [2]int{1024, 1024},
		NegativeCropsTopLeft: [2]int{4, 4}}
	pos, neg := BaseTimeIDs(p)
	if want := []float32{1024, 1024, 8, 16, 1024, 1024}; !cmp.Equal(pos, want) || !cmp.Equal(neg, want) {
		t.Errorf("negative crops alone must be ignored: pos %v neg %v", pos, neg)
	}
	p.NegativeOriginalSize, p.NegativeTargetSize = &no, &nt
	_, neg = BaseTimeIDs(p)
	if want := []float32{512, 512, 4, 4, 768, 1024}; !cmp.Equal(neg, want) {
		t.Errorf("negative ids %v, want %v", neg, want)
	}
}
