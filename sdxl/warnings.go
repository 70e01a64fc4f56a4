package sdxl

import "fmt"

// warnings lists what a planned run will not do as asked, or what
// diffusers would silently ignore.
func (p *Pipeline) warnings(pl *plan) []Warning {
	r := &pl.req
	var out []Warning
	if pl.watermark && r.Width >= 256 && r.Width*r.Height < 256*256 {
		// diffusers leaves images under 256 pixels wide alone and
		// invisible-watermark fails below 256*256 pixels: skip it instead.
		pl.watermark = false
		out = append(out, Warning{Field: "Watermark", Message: fmt.Sprintf(
			"no watermark: %dx%d is too small for the invisible watermark (it needs 256x256 pixels)", r.Width, r.Height)})
	}
	if r.NegativePrompt == nil && r.NegativePrompt2 != nil && p.Base != nil && p.Base.Text.ForceZerosForEmptyPrompt && r.Guidance > 1 {
		out = append(out, Warning{Field: "NegativePrompt2", Message: "a second negative prompt without a negative prompt is ignored by the base, as in diffusers (no negative prompt means zeros there); give an empty negative prompt to use it"})
	}
	if r.inpainting() && p.Base != nil && p.Refiner != nil {
		out = append(out, Warning{Field: maskField(r), Message: "inpainting runs the base alone: the refiner is not used"})
	}
	if (r.AestheticScore != nil || r.NegativeAestheticScore != nil) && !p.usesAesthetics(pl) {
		out = append(out, Warning{Field: "AestheticScore", Message: "aesthetic scores only condition a refiner (requires_aesthetics_score); this run ignores them"})
	}
	out = append(out, controlWarnings(pl)...)
	return append(out, p.truncationWarnings(pl)...)
}

func (p *Pipeline) usesAesthetics(pl *plan) bool {
	for _, st := range pl.stages {
		if st.model.RequiresAestheticsScore {
			return true
		}
	}
	return false
}

// truncationWarnings says when diffusers' plain prompt encoding cuts a
// prompt at 77 positions (BOS + 75 tokens + EOS): diffusers only logs it,
// and the cut words silently stop mattering.
func (p *Pipeline) truncationWarnings(pl *plan) []Warning {
	r := &pl.req
	if r.Weighting != WeightingNone {
		return nil
	}
	m := pl.stages[0].model
	_, tok2, err := m.tokenizers()
	if err != nil {
		return nil
	}
	var out []Warning
	neg := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	for _, t := range []struct{ field, text string }{
		{"Prompt", r.Prompt}, {"Prompt2", r.Prompt2}, {"NegativePrompt", neg(r.NegativePrompt)}, {"NegativePrompt2", neg(r.NegativePrompt2)},
	} {
		if n := len(tok2.Encode(t.text)); n > 75 {
			out = append(out, Warning{Field: t.field, Message: fmt.Sprintf(
				"%s is %d tokens; like diffusers only the first 75 are used (compel prompt weighting encodes long prompts in 75-token chunks)", FieldLabel(t.field), n)})
		}
	}
	return out
}
