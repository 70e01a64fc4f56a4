package clip

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// benchIDs are a 77-token prompt pair as the real tokenizers shape it
// (BOS, a few tokens, EOS, padding); the cost does not depend on the ids.
func benchIDs() IDPrompts {
	row := func(pad int32, toks ...int32) []int32 {
		r := append([]int32{49406}, toks...)
		r = append(r, 49407)
		for len(r) < 77 {
			r = append(r, pad)
		}
		return r
	}
	pos := []int32{320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496}
	neg := []int32{1867, 281, 1378, 3027}
	return IDPrompts{
		IDs1: [][]int32{row(49407, pos...)}, IDs2: [][]int32{row(0, pos...)},
		NegIDs1: [][]int32{row(49407, neg...)}, NegIDs2: [][]int32{row(0, neg...)},
	}
}

func benchPair(b *testing.B, s *TextEncoders, be tensor.Backend) {
	ids := benchIDs()
	opt := PromptOptions{ClassifierFreeGuidance: true}
	b.ResetTimer()
	for b.Loop() {
		p, err := s.EncodePromptIDs(context.Background(), be, ids, opt)
		if err != nil {
			b.Fatal(err)
		}
		p.Free()
	}
}

// BenchmarkSmallPromptPair encodes a positive and a negative prompt with the
// small golden model's encoders (CPU, float32).
func BenchmarkSmallPromptPair(b *testing.B) {
	be := cpu.New()
	dir := golden.Path(b, "small/models/sdxl-small-base")
	te1, err := LoadDir(be, dir+"/text_encoder", LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	te2, err := LoadDir(be, dir+"/text_encoder_2", LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	benchPair(b, &TextEncoders{TextEncoder: te1, TextEncoder2: te2}, be)
}

// BenchmarkFullSizePromptPair does the same with full-size encoders built
// from the real SDXL configs with random weights (3.3 GB of float32).
func BenchmarkFullSizePromptPair(b *testing.B) {
	be := cpu.New()
	te1, err := New(config.SDXLTextEncoder())
	if err != nil {
		b.Fatal(err)
	}
	te2, err := New(config.SDXLTextEncoder2())
	if err != nil {
		b.Fatal(err)
	}
	nn.InitRandom(be, te1, tensor.F32, 1)
	nn.InitRandom(be, te2, tensor.F32, 2)
	s := &TextEncoders{TextEncoder: te1, TextEncoder2: te2}
	b.Run("pair", func(b *testing.B) { benchPair(b, s, be) })
	ids := benchIDs()
	b.Run("te1_hs-2", func(b *testing.B) {
		for b.Loop() {
			o, err := te1.Forward(context.Background(), be, ids.IDs1, Request{HiddenStates: []int{-2}})
			if err != nil {
				b.Fatal(err)
			}
			o.Free()
		}
	})
	b.Run("te2_full", func(b *testing.B) {
		for b.Loop() {
			o, err := te2.Forward(context.Background(), be, ids.IDs2, Request{HiddenStates: []int{-2}, Final: true})
			if err != nil {
				b.Fatal(err)
			}
			o.Free()
		}
	})
}
