package capture

import (
	"path/filepath"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/tensor"
)

var _ nn.Recorder = (*Recorder)(nil)

func TestMatch(t *testing.T) {
	const attn2 = "down_blocks.1.attentions.0.transformer_blocks.0.attn2"
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{attn2, attn2, true},
		{attn2, attn2 + ".input", false},
		{attn2 + ".input", attn2 + ".input", true},
		{"down_blocks.*.attentions.0.transformer_blocks.0.attn2", attn2, true},
		{"down_blocks.*.attentions.0", attn2, false}, // no implicit prefix
		{"down_blocks.1.**", attn2, true},
		{"down_blocks.1.**", "down_blocks.1", true}, // ** matches zero segments
		{"down_blocks.1.**", "down_blocks.10.resnets.0", false},
		{"down_blocks.1.**", attn2 + ".input", false},
		{"**.input", attn2 + ".input", true},
		{"**.attn2", attn2, true},
		{"**.attn?", attn2, true},
		{"**.attn*", "mid_block.attentions.0", false},
		{"**.transformer_blocks.*.attn*", attn2, true},
		{"up_blocks.**.resnets.0", "up_blocks.0.resnets.0", true},
		{"up_blocks.**.resnets.0", "up_blocks.0.resnets.1", false},
		{"conv_*", "conv_in", true},
		{"conv_*", "conv_in.weight.x", false},
		{"**", "time_embedding", true},
		{"*", "down_blocks.0", false},
	} {
		r := MustNew(c.pattern)
		if got := r.Match(c.path); got != c.want {
			t.Errorf("pattern %q, path %q: %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
}

func TestNilRecorder(t *testing.T) {
	var r *Recorder
	var rec nn.Recorder = r
	rec.Record("x", nil) // must not panic
}

func TestNewErrors(t *testing.T) {
	for _, p := range []string{"", "a..b", ".a", "a."} {
		if _, err := New(p); err == nil {
			t.Errorf("New(%q): no error", p)
		}
	}
}

func TestRecordCopiesAndKeepFirst(t *testing.T) {
	b := cpu.New()
	r := MustNew("x.**")
	x := b.FromFloat32(tensor.F32, tensor.Shape{2, 2}, []float32{1, 2, 3, 4})
	r.Record("x.a", x)
	r.Record("y", x) // not matched
	r.Record("x.a", b.FromFloat32(tensor.F32, tensor.Shape{1}, []float32{9}))
	a, ok := r.Get("x.a")
	if !ok || a.Count != 2 || len(a.Data) != 1 || a.Data[0] != 9 {
		t.Fatalf("last report should win: %+v", a)
	}
	if _, ok := r.Get("y"); ok {
		t.Fatal("unmatched path recorded")
	}
	r.Reset()
	r.KeepFirst = true
	r.Record("x.a", x)
	r.Record("x.a", b.FromFloat32(tensor.F32, tensor.Shape{1}, []float32{9}))
	a, _ = r.Get("x.a")
	if a.Count != 2 || len(a.Data) != 4 || a.Shape[0] != 2 {
		t.Fatalf("KeepFirst: %+v", a)
	}

	file := filepath.Join(t.TempDir(), "acts.safetensors")
	if err := r.WriteSafetensors(file, "act.", map[string]string{"note": "test"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, s, err := f.Float32("act.x.a")
	if err != nil || len(s) != 2 || d[3] != 4 {
		t.Fatalf("written tensor %v %v %v", d, s, err)
	}
}
