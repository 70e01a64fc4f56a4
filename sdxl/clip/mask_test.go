package clip

import (
	"context"
	"math"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/tensor"
)

// refForward is a plain float64 CLIP text transformer for one row, written
// straight from transformers' modeling_clip.py, used to check the attention
// mask path that no golden covers. keep[j] false hides key j. It returns
// hidden_states (embeddings, then every layer's output).
func refForward(b tensor.Backend, m *TextModel, ids []int32, keep []bool) [][][]float64 {
	host := func(t *tensor.Tensor) []float64 {
		f := b.ToFloat32(t)
		out := make([]float64, len(f))
		for i, v := range f {
			out[i] = float64(v)
		}
		return out
	}
	D, L := m.Config.HiddenSize, len(ids)
	H := m.Config.NumAttentionHeads
	hd := D / H
	linear := func(x [][]float64, w, bias []float64, out int) [][]float64 {
		y := make([][]float64, len(x))
		for i, row := range x {
			y[i] = make([]float64, out)
			for o := range out {
				s := 0.0
				if bias != nil {
					s = bias[o]
				}
				for k, v := range row {
					s += v * w[o*len(row)+k]
				}
				y[i][o] = s
			}
		}
		return y
	}
	layerNorm := func(x [][]float64, w, bias []float64) [][]float64 {
		y := make([][]float64, len(x))
		for i, row := range x {
			mean, vr := 0.0, 0.0
			for _, v := range row {
				mean += v
			}
			mean /= float64(len(row))
			for _, v := range row {
				vr += (v - mean) * (v - mean)
			}
			vr /= float64(len(row))
			y[i] = make([]float64, len(row))
			for k, v := range row {
				y[i][k] = (v-mean)/math.Sqrt(vr+m.Config.LayerNormEps)*w[k] + bias[k]
			}
		}
		return y
	}
	tok, pos := host(m.TokenEmbedding.Weight), host(m.PositionEmbedding.Weight)
	x := make([][]float64, L)
	for i, id := range ids {
		x[i] = make([]float64, D)
		for k := range D {
			x[i][k] = tok[int(id)*D+k] + pos[i*D+k]
		}
	}
	hs := [][][]float64{x}
	for _, l := range m.Layers {
		n := layerNorm(x, host(l.LayerNorm1.Weight), host(l.LayerNorm1.Bias))
		a := l.SelfAttn
		q := linear(n, host(a.QProj.Weight), host(a.QProj.Bias), D)
		k := linear(n, host(a.KProj.Weight), host(a.KProj.Bias), D)
		v := linear(n, host(a.VProj.Weight), host(a.VProj.Bias), D)
		att := make([][]float64, L)
		for i := range L {
			att[i] = make([]float64, D)
			for h := range H {
				var w []float64
				var js []int
				mx := math.Inf(-1)
				for j := 0; j <= i; j++ {
					if keep != nil && !keep[j] {
						continue
					}
					s := 0.0
					for d := range hd {
						s += q[i][h*hd+d] * k[j][h*hd+d]
					}
					s /= math.Sqrt(float64(hd))
					w, js = append(w, s), append(js, j)
					mx = math.Max(mx, s)
				}
				sum := 0.0
				for t := range w {
					w[t] = math.Exp(w[t] - mx)
					sum += w[t]
				}
				for t, j := range js {
					for d := range hd {
						att[i][h*hd+d] += w[t] / sum * v[j][h*hd+d]
					}
				}
			}
		}
		o := linear(att, host(a.OutProj.Weight), host(a.OutProj.Bias), D)
		for i := range L {
			for d := range D {
				o[i][d] += x[i][d]
			}
		}
		x = o
		n = layerNorm(x, host(l.LayerNorm2.Weight), host(l.LayerNorm2.Bias))
		f := linear(n, host(l.MLP.FC1.Weight), host(l.MLP.FC1.Bias), m.Config.IntermediateSize)
		for _, row := range f {
			for c, v := range row {
				if m.act == actGELU {
					row[c] = 0.5 * v * (1 + math.Erf(v/math.Sqrt2))
				} else {
					row[c] = v / (1 + math.Exp(-1.702*v))
				}
			}
		}
		f = linear(f, host(l.MLP.FC2.Weight), host(l.MLP.FC2.Bias), D)
		for i := range L {
			for d := range D {
				f[i][d] += x[i][d]
			}
		}
		x = f
		hs = append(hs, x)
	}
	return hs
}

func flatten(x [][]float64) []float32 {
	var out []float32
	for _, r := range x {
		for _, v := range r {
			out = append(out, float32(v))
		}
	}
	return out
}

// TestAttentionMask checks the per-row key mask (Compel's down-weighting)
// against the float64 reference, and that the reference itself reproduces
// the unmasked golden.
func TestAttentionMask(t *testing.T) {
	f := golden.Open(t, tinyGolden)
	b := cpu.New()
	for _, enc := range []string{"text_encoder", "text_encoder_2"} {
		m := loadTiny(t, b, enc, "")
		ids := idRows(t, f, "ids_2")[:1] // prompt_a: BOS, 6 ids, EOS, padding
		if enc == "text_encoder" {
			ids = idRows(t, f, "ids_1")[:1]
		}
		want, _ := f.Get(map[string]string{"text_encoder": "te1.hidden_states_m2", "text_encoder_2": "te2.hidden_states_m2"}[enc])
		ref := refForward(b, m, ids[0], nil)
		golden.Check(t, enc+" float64 reference vs golden hidden_states[-2]", flatten(ref[len(ref)-2]), want[:77*m.Config.HiddenSize], tolText)

		keep := make([]bool, 77)
		for j := range keep {
			keep[j] = j < 3 || j > 5 // hide tokens 3..5
		}
		all := make([]bool, 77)
		for j := range all {
			all[j] = true
		}
		o, err := m.Forward(context.Background(), b, [][]int32{ids[0], ids[0]}, Request{HiddenStates: []int{-2}, AttentionMask: [][]bool{keep, all}})
		if err != nil {
			t.Fatal(err)
		}
		got := b.ToFloat32(o.HiddenStates[0])
		n := 77 * m.Config.HiddenSize
		refMasked := refForward(b, m, ids[0], keep)
		golden.Check(t, enc+" masked row vs float64 reference", got[:n], flatten(refMasked[len(refMasked)-2]), tolText)
		golden.Check(t, enc+" all-true mask row vs golden", got[n:], want[:n], tolText)
		if golden.RelErr(got[:n], got[n:]) < 1e-3 {
			t.Errorf("%s: masking tokens 3..5 changed nothing", enc)
		}
	}
	m := loadTiny(t, b, "text_encoder", "")
	row := idRows(t, f, "ids_1")[0]
	bad := make([]bool, 77)
	if _, err := m.Forward(context.Background(), b, [][]int32{row}, Request{Final: true, AttentionMask: [][]bool{bad}}); err == nil {
		t.Errorf("a mask hiding BOS was accepted")
	}
	if _, err := m.Forward(context.Background(), b, [][]int32{row}, Request{Final: true, AttentionMask: [][]bool{bad[:5]}}); err == nil {
		t.Errorf("a short mask row was accepted")
	}
}
