package lora

import (
	"fmt"
	"math"
)

// part is one layer's change to one weight [out, K] (K = in·kh·kw), already
// multiplied by its scale: a low-rank product u·d (u [out, r], d [r, K]),
// merged on the model's backend, or a dense delta computed on the host.
type part struct {
	u, d  []float32
	r     int
	dense []float64
}

// tensor64 is a layer tensor widened to float64 with its shape.
type tensor64 struct {
	v     []float64
	shape []int
	key   string
}

func (t tensor64) numel() int { return len(t.v) }

// load reads the tensors of the given roles.
func (f *File) load(l *Layer, roles ...role) (map[role]tensor64, error) {
	out := map[role]tensor64{}
	for _, r := range roles {
		if !l.has(r) {
			continue
		}
		v, shape, err := f.tensor(l.keys[r])
		if err != nil {
			return nil, err
		}
		w := make([]float64, len(v))
		for i, x := range v {
			w[i] = float64(x)
		}
		out[r] = tensor64{v: w, shape: shape, key: l.keys[r]}
	}
	return out, nil
}

// alphaScale is alpha/rank with kohya's and LyCORIS's convention that a
// missing or zero alpha means alpha = rank (networks/lora.py LoRAModule,
// lycoris/modules/base.py).
func (l *Layer) alphaScale(rank int) float64 {
	if !l.has(roleAlpha) || l.alpha == 0 {
		return 1
	}
	return l.alpha / float64(rank)
}

// part computes the layer's change to weight w (shape [out, in(, kh, kw)])
// at the given strength, checking every tensor's shape against it. With
// check set it only checks (the dense deltas are not computed).
func (f *File) part(l *Layer, out, in, kh, kw int, strength float64, check bool) (part, error) {
	switch l.Kind {
	case LoHa:
		return f.lohaPart(l, out, in, kh, kw, strength, check)
	case LoKr:
		return f.lokrPart(l, out, in, kh, kw, strength, check)
	}
	if l.has(roleMid) {
		return f.tuckerLoRAPart(l, out, in, kh, kw, strength, check)
	}
	ts, err := f.load(l, roleDown, roleUp)
	if err != nil {
		return part{}, err
	}
	down, up := ts[roleDown], ts[roleUp]
	r := down.shape[0]
	if err := checkShape(down, r, in, kh, kw); err != nil {
		return part{}, err
	}
	if err := checkShape(up, out, r, 1, 1); err != nil {
		return part{}, err
	}
	s, err := f.loraScale(l, r)
	if err != nil {
		return part{}, err
	}
	s *= strength
	p := part{r: r, u: make([]float32, len(up.v)), d: make([]float32, len(down.v))}
	for i, v := range up.v {
		p.u[i] = float32(v * s)
	}
	for i, v := range down.v {
		p.d[i] = float32(v)
	}
	return p, nil
}

// loraScale is a plain LoRA layer's alpha/rank: from its .alpha tensor, else
// from the file's PEFT metadata for diffusers-named layers, else 1.
func (f *File) loraScale(l *Layer, rank int) (float64, error) {
	if l.has(roleAlpha) || l.naming != modulePath || f.peft[l.Component] == nil {
		return l.alphaScale(rank), nil
	}
	return f.peft[l.Component].scale(peftModuleName(l.Component, l.module), rank, l.keys[roleDown])
}

// checkShape accepts t as [a, b, kh, kw], or as [a, b] when kh = kw = 1, or
// (for the linear layers some trainers store as 1x1 convolutions) as
// [a, b, 1, 1] when the weight is linear.
func checkShape(t tensor64, a, b, kh, kw int) error {
	s := t.shape
	ok := len(s) == 4 && s[0] == a && s[1] == b && s[2] == kh && s[3] == kw
	ok = ok || (kh == 1 && kw == 1 && len(s) == 2 && s[0] == a && s[1] == b)
	if !ok {
		want := fmt.Sprint([]int{a, b})
		if kh != 1 || kw != 1 {
			want = fmt.Sprint([]int{a, b, kh, kw})
		}
		return fmt.Errorf("key %q has shape %v, the model's layer needs %s", t.key, s, want)
	}
	return nil
}

// checkMatrix accepts t as rows x cols once its trailing dimensions are
// flattened (LyCORIS stores conv factors both ways).
func checkMatrix(t tensor64, rows, cols int) error {
	if len(t.shape) < 2 || t.shape[0] != rows || t.numel() != rows*cols {
		return fmt.Errorf("key %q has shape %v, the model's layer needs %d x %d", t.key, t.shape, rows, cols)
	}
	return nil
}

// tuckerLoRAPart is LoCon with a Tucker core (LyCORIS locon use_tucker:
// lora_down 1x1 conv to rank r, lora_mid the k×k conv r -> r, lora_up 1x1
// conv to out): Δ[o,i,k] = Σ_a Σ_b up[o,a]·mid[a,b,k]·down[b,i], scaled by
// alpha / down's rank (stable-diffusion.cpp lora.hpp get_lora_weight_diff).
func (f *File) tuckerLoRAPart(l *Layer, out, in, kh, kw int, strength float64, check bool) (part, error) {
	ts, err := f.load(l, roleDown, roleUp, roleMid)
	if err != nil {
		return part{}, err
	}
	down, up, mid := ts[roleDown], ts[roleUp], ts[roleMid]
	rd := down.shape[0]
	if len(up.shape) < 2 {
		return part{}, fmt.Errorf("key %q has shape %v", up.key, up.shape)
	}
	ru := up.shape[1]
	for _, c := range []struct {
		t          tensor64
		a, b, h, w int
	}{{down, rd, in, 1, 1}, {up, out, ru, 1, 1}, {mid, ru, rd, kh, kw}} {
		if err := checkShape(c.t, c.a, c.b, c.h, c.w); err != nil {
			return part{}, err
		}
	}
	if check {
		return part{}, nil
	}
	s := l.alphaScale(rd) * strength
	kk := kh * kw
	// t[o, b, k] = Σ_a up[o,a]·mid[a,b,k]
	t := make([]float64, out*rd*kk)
	for o := range out {
		for a := range ru {
			ua := up.v[o*ru+a]
			row := t[o*rd*kk : (o+1)*rd*kk]
			for j, m := range mid.v[a*rd*kk : (a+1)*rd*kk] {
				row[j] += ua * m
			}
		}
	}
	d := make([]float64, out*in*kk)
	for o := range out {
		for b := range rd {
			for i := range in {
				db := down.v[b*in+i] * s
				dst := d[(o*in+i)*kk : (o*in+i+1)*kk]
				for k, tv := range t[(o*rd+b)*kk : (o*rd+b+1)*kk] {
					dst[k] += tv * db
				}
			}
		}
	}
	return part{dense: d}, nil
}

// lohaPart is LyCORIS's LoHa: Δ = (w1a·w1b) ⊙ (w2a·w2b)·alpha/rank with
// rank = hada_w1_b's first dimension (lycoris/functional/loha.py
// diff_weight with gamma = alpha/rank as modules/loha.py sets it; the same
// rule as AUTOMATIC1111's network_hada.py and stable-diffusion.cpp). With
// Tucker cores each factor is Σ_ij t[i,j,k]·w_b[j,n]·w_a[i,o]
// (make_weight_tucker: w_a is [r, out], w_b is [r, in]).
func (f *File) lohaPart(l *Layer, out, in, kh, kw int, strength float64, check bool) (part, error) {
	ts, err := f.load(l, roleHadaW1A, roleHadaW1B, roleHadaW2A, roleHadaW2B, roleHadaT1, roleHadaT2)
	if err != nil {
		return part{}, err
	}
	rank := ts[roleHadaW1B].shape[0]
	var h1, h2 []float64
	if l.has(roleHadaT1) {
		if h1, err = tuckerFactor(ts[roleHadaT1], ts[roleHadaW1A], ts[roleHadaW1B], out, in, kh, kw, check); err != nil {
			return part{}, err
		}
		if h2, err = tuckerFactor(ts[roleHadaT2], ts[roleHadaW2A], ts[roleHadaW2B], out, in, kh, kw, check); err != nil {
			return part{}, err
		}
	} else {
		K := in * kh * kw
		if h1, err = lowRank(ts[roleHadaW1A], ts[roleHadaW1B], out, K, check); err != nil {
			return part{}, err
		}
		if h2, err = lowRank(ts[roleHadaW2A], ts[roleHadaW2B], out, K, check); err != nil {
			return part{}, err
		}
	}
	if check {
		return part{}, nil
	}
	s := l.alphaScale(rank) * strength
	for i := range h1 {
		h1[i] *= h2[i] * s
	}
	return part{dense: h1}, nil
}

// lowRank is a·b for a [rows, r] and b [r, cols] (trailing dimensions
// flattened), in float64 (nil with check: shapes only).
func lowRank(a, b tensor64, rows, cols int, check bool) ([]float64, error) {
	if len(a.shape) < 2 {
		return nil, fmt.Errorf("key %q has shape %v", a.key, a.shape)
	}
	r := a.numel() / max(1, a.shape[0])
	if err := checkMatrix(a, rows, r); err != nil {
		return nil, err
	}
	if err := checkMatrix(b, r, cols); err != nil || check {
		return nil, err
	}
	out := make([]float64, rows*cols)
	for i := range rows {
		dst := out[i*cols : (i+1)*cols]
		for j, av := range a.v[i*r : (i+1)*r] {
			for k, bv := range b.v[j*cols : (j+1)*cols] {
				dst[k] += av * bv
			}
		}
	}
	return out, nil
}

// tuckerFactor rebuilds p[o, n, k] = Σ_ij t[i,j,k]·wb[j,n]·wa[i,o] for
// t [ri, rj, kh, kw], wa [ri, P], wb [rj, Q] (LyCORIS's einsum
// "i j ..., j r, i p -> p r ..."); it is [P, Q·kh·kw] flattened (nil with
// check: shapes only).
func tuckerFactor(t, wa, wb tensor64, P, Q, kh, kw int, check bool) ([]float64, error) {
	if len(t.shape) != 4 || t.shape[2] != kh || t.shape[3] != kw {
		return nil, fmt.Errorf("key %q has shape %v, the model's layer needs a [r, r, %d, %d] core", t.key, t.shape, kh, kw)
	}
	ri, rj, kk := t.shape[0], t.shape[1], kh*kw
	if err := checkMatrix(wa, ri, P); err != nil {
		return nil, err
	}
	if err := checkMatrix(wb, rj, Q); err != nil || check {
		return nil, err
	}
	// u[o, j, k] = Σ_i wa[i,o]·t[i,j,k]
	u := make([]float64, P*rj*kk)
	for i := range ri {
		ti := t.v[i*rj*kk : (i+1)*rj*kk]
		for o := range P {
			a := wa.v[i*P+o]
			dst := u[o*rj*kk : (o+1)*rj*kk]
			for x, tv := range ti {
				dst[x] += a * tv
			}
		}
	}
	out := make([]float64, P*Q*kk)
	for o := range P {
		for j := range rj {
			uj := u[(o*rj+j)*kk : (o*rj+j+1)*kk]
			for n := range Q {
				b := wb.v[j*Q+n]
				dst := out[(o*Q+n)*kk : (o*Q+n+1)*kk]
				for k, uv := range uj {
					dst[k] += uv * b
				}
			}
		}
	}
	return out, nil
}

// lokrPart is LyCORIS's LoKr: Δ = kron(w1, w2)·alpha/rank, each factor
// whole or a low-rank pair (w2 optionally with a Tucker core lokr_t2 as
// rebuild_tucker builds it). The rank is lokr_w1_b's first dimension when w1
// is factored, else lokr_w2_b's; with both factors whole the scale is 1
// (lycoris/modules/lokr.py: "use scale = 1"; network_lokr.py and
// stable-diffusion.cpp agree).
func (f *File) lokrPart(l *Layer, out, in, kh, kw int, strength float64, check bool) (part, error) {
	ts, err := f.load(l, roleLokrW1, roleLokrW1A, roleLokrW1B, roleLokrW2, roleLokrW2A, roleLokrW2B, roleLokrT2)
	if err != nil {
		return part{}, err
	}
	w1, a, c, err := lokrFactor(ts, roleLokrW1, roleLokrW1A, roleLokrW1B, check)
	if err != nil {
		return part{}, err
	}
	if a == 0 || c == 0 || out%a != 0 || (in*kh*kw)%c != 0 {
		return part{}, fmt.Errorf("key %q: a %d x %d Kronecker factor does not divide the model's %v layer", l.firstKey(), a, c, []int{out, in, kh, kw})
	}
	b, D := out/a, in*kh*kw/c
	var w2 []float64
	switch {
	case l.has(roleLokrT2):
		w2, err = tuckerFactor(ts[roleLokrT2], ts[roleLokrW2A], ts[roleLokrW2B], b, in/c, kh, kw, check)
	case l.has(roleLokrW2):
		w2 = ts[roleLokrW2].v
		err = checkMatrix(ts[roleLokrW2], b, D)
	default:
		w2, err = lowRank(ts[roleLokrW2A], ts[roleLokrW2B], b, D, check)
	}
	if err != nil || check {
		return part{}, err
	}
	s := strength
	switch {
	case l.has(roleLokrW1A):
		s *= l.alphaScale(ts[roleLokrW1B].shape[0])
	case l.has(roleLokrW2B):
		s *= l.alphaScale(ts[roleLokrW2B].shape[0])
	}
	K := in * kh * kw
	d := make([]float64, out*K)
	for i := range a {
		for j := range b {
			row := d[(i*b+j)*K : (i*b+j+1)*K]
			for x := range c {
				w := w1[i*c+x] * s
				dst := row[x*D : (x+1)*D]
				for m, v := range w2[j*D : (j+1)*D] {
					dst[m] = w * v
				}
			}
		}
	}
	return part{dense: d}, nil
}

// lokrFactor returns LoKr's first factor [a, c] whole or as w1a·w1b.
func lokrFactor(ts map[role]tensor64, whole, fa, fb role, check bool) ([]float64, int, int, error) {
	if w, ok := ts[whole]; ok {
		if len(w.shape) != 2 {
			return nil, 0, 0, fmt.Errorf("key %q has shape %v, want a matrix", w.key, w.shape)
		}
		return w.v, w.shape[0], w.shape[1], nil
	}
	wa, wb := ts[fa], ts[fb]
	if len(wa.shape) != 2 || len(wb.shape) != 2 {
		return nil, 0, 0, fmt.Errorf("keys %q %v and %q %v: want matrices", wa.key, wa.shape, wb.key, wb.shape)
	}
	v, err := lowRank(wa, wb, wa.shape[0], wb.shape[1], check)
	return v, wa.shape[0], wb.shape[1], err
}

// finite reports a usable strength.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
