package prompt

import (
	"fmt"
	"math"
)

// MaxWeight bounds the magnitude of a prompt weight (Compel and A1111).
//
// Neither Compel nor AUTOMATIC1111 bounds weights: "cat" followed by 1000
// "+" is 1.1^1000 ≈ 2.5e41, which is infinite in the float32 (and float16)
// text embeddings the weight multiplies; the UNet then gives NaN latents
// and the VAE an all-black image, without an error. Here such a prompt is
// refused with an error naming the fragment. The bound leaves every
// meaningful weight alone: 100 is 1.1^48 (48 "+"), and weights beyond a few
// units already swamp the rest of the prompt.
const MaxWeight = 100

// checkWeight refuses a weight that is not finite or beyond ±MaxWeight;
// what names it in the error.
func checkWeight(syntax, what string, w float64) error {
	if math.IsNaN(w) || math.IsInf(w, 0) || math.Abs(w) > MaxWeight {
		return fmt.Errorf("%s prompt: %s has weight %g, beyond ±%d: such weights overflow the text embeddings "+
			"(%s itself passes them on, giving NaN latents and an all-black image)", syntax, what, w, MaxWeight, syntax)
	}
	return nil
}

// checkFragments applies checkWeight to every fragment.
func checkFragments(syntax string, frags []Fragment) error {
	for _, f := range frags {
		if f.Weight == BreakWeight && f.Text == "BREAK" {
			continue
		}
		if err := checkWeight(syntax, fmt.Sprintf("fragment %q", f.Text), f.Weight); err != nil {
			return err
		}
	}
	return nil
}

// checkWeights checks every weight of a parsed Compel prompt: fragments
// (both sides of a swap), blend weights and .and() weights.
func (p *CompelParse) checkWeights() error {
	for i, pr := range p.Prompts {
		for _, frags := range [][]Fragment{pr.Fragments, pr.Edited} {
			if err := checkFragments("compel", frags); err != nil {
				return err
			}
		}
		if pr.Blend != nil {
			for j, sub := range pr.Blend.Prompts {
				if err := checkFragments("compel", sub); err != nil {
					return err
				}
				if err := checkWeight("compel", fmt.Sprintf("blend entry %d", j), pr.Blend.Weights[j]); err != nil {
					return err
				}
			}
		}
		if err := checkWeight("compel", fmt.Sprintf(".and() entry %d", i), p.Weights[i]); err != nil {
			return err
		}
	}
	return nil
}
