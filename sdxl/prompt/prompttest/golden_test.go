package prompttest

import (
	"path/filepath"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/clip"
)

func smallEncoders(t *testing.T) (*clip.HostEncoder, *clip.HostEncoder) {
	t.Helper()
	base := filepath.Dir(golden.Path(t, "small/models/sdxl-small-base/model_index.json"))
	b := cpu.New()
	m1, err := clip.LoadDir(b, filepath.Join(base, "text_encoder"), clip.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := clip.LoadDir(b, filepath.Join(base, "text_encoder_2"), clip.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &clip.HostEncoder{Backend: b, Model: m1}, &clip.HostEncoder{Backend: b, Model: m2}
}

// TestCompelGoldensWithClip runs both golden Compel scenarios with the
// project's CLIP encoders on the CPU backend.
func TestCompelGoldensWithClip(t *testing.T) {
	e1, e2 := smallEncoders(t)
	t.Run("lion_weighted", func(t *testing.T) { CheckCompelLion(t, e1, e2) })
	t.Run("anime_long", func(t *testing.T) { CheckCompelAnimeLong(t, e1, e2) })
}
