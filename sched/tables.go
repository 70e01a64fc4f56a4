package sched

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// This file holds the schedule tables every scheduler builds from: betas,
// cumulative alphas, sigma tables, timestep spacings and the Karras /
// exponential / beta / Lu sigma conversions. Diffusers builds them partly
// with torch float32 tensors and partly with numpy float64 arrays; each
// function says which and reproduces that arithmetic (the goldens hold
// betas and alphas_cumprod bit for bit).

// fma32 is a float32 fused multiply-add (one rounding), the operation GCC
// emits for torch kernels written as a*b+c.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact
	cd := float64(c)
	s := p + cd
	bb := s - p
	e := (p - (s - bb)) + (cd - bb) // s + e == p + c exactly
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	lo, hi := r, r
	if float64(r) < s {
		hi = math.Nextafter32(r, float32(math.Inf(1)))
	} else {
		lo = math.Nextafter32(r, float32(math.Inf(-1)))
	}
	if s != (float64(lo)+float64(hi))/2 {
		return r
	}
	if e > 0 {
		return hi
	}
	return lo
}

// torchLinspace32 is torch.linspace(start, end, n, dtype=float32) on the
// CPU: a float32 step, the first half counted from start and the second
// from end, each point one fused multiply-add.
func torchLinspace32(start, end float64, n int) []float32 {
	out := make([]float32, n)
	if n == 1 {
		out[0] = float32(start)
		return out
	}
	s, e := float32(start), float32(end)
	step := (e - s) / float32(n-1)
	half := n / 2
	for i := range out {
		if i < half {
			out[i] = fma32(step, float32(i), s)
		} else {
			out[i] = fma32(-step, float32(n-i-1), e)
		}
	}
	return out
}

// torchCumprod32 is torch.cumprod of a float32 CPU tensor, which
// accumulates in double and rounds each prefix product to float32.
func torchCumprod32(x []float32) []float32 {
	out := make([]float32, len(x))
	p := 1.0
	for i, v := range x {
		p *= float64(v)
		out[i] = float32(p)
	}
	return out
}

// betasFor builds the float32 beta schedule of the configuration.
// extra lists the additional schedules a class accepts ("exp" for Heun,
// "sigmoid" and "laplace" for DDPM).
func betasFor(p *Params, extra ...string) ([]float32, error) {
	n := p.NumTrainTimesteps
	if n < 2 {
		return nil, fmt.Errorf("%s: num_train_timesteps = %d, need at least 2", p.Class, n)
	}
	if p.TrainedBetas != nil {
		if len(p.TrainedBetas) != n {
			return nil, fmt.Errorf("%s: trained_betas has %d values, num_train_timesteps is %d", p.Class, len(p.TrainedBetas), n)
		}
		out := make([]float32, n)
		for i, b := range p.TrainedBetas {
			out[i] = float32(b)
		}
		return out, nil
	}
	allowed := func(s string) bool {
		for _, e := range extra {
			if e == s {
				return true
			}
		}
		return false
	}
	switch p.BetaSchedule {
	case "linear":
		return torchLinspace32(p.BetaStart, p.BetaEnd, n), nil
	case "scaled_linear":
		b := torchLinspace32(math.Sqrt(p.BetaStart), math.Sqrt(p.BetaEnd), n)
		for i := range b {
			b[i] *= b[i]
		}
		return b, nil
	case "squaredcos_cap_v2":
		return betasForAlphaBar(n, "cosine"), nil
	case "exp":
		if allowed("exp") {
			return betasForAlphaBar(n, "exp"), nil
		}
	case "laplace":
		if allowed("laplace") {
			return betasForAlphaBar(n, "laplace"), nil
		}
	case "sigmoid":
		if allowed("sigmoid") {
			// torch.sigmoid(torch.linspace(-6, 6, n)) * (end - start) + start
			x := torchLinspace32(-6, 6, n)
			scale, start := float32(p.BetaEnd-p.BetaStart), float32(p.BetaStart)
			for i, v := range x {
				sg := float32(1 / (1 + math.Exp(-float64(v))))
				x[i] = sg*scale + start
			}
			return x, nil
		}
	}
	return nil, fmt.Errorf("%s: beta_schedule %q is not implemented for this scheduler", p.Class, p.BetaSchedule)
}

// betasForAlphaBar is diffusers' betas_for_alpha_bar: Python float
// arithmetic, stored as a float32 tensor.
func betasForAlphaBar(n int, kind string) []float32 {
	const maxBeta = 0.999
	alphaBar := func(t float64) float64 {
		switch kind {
		case "exp":
			return math.Exp(t * -12.0)
		case "laplace":
			lmb := -0.5 * math.Copysign(1, 0.5-t) * math.Log(1-2*math.Abs(0.5-t)+1e-06)
			snr := math.Exp(lmb)
			return math.Sqrt(snr / (1 + snr))
		}
		c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	out := make([]float32, n)
	for i := range out {
		t1 := float64(i) / float64(n)
		t2 := float64(i+1) / float64(n)
		out[i] = float32(math.Min(1-alphaBar(t2)/alphaBar(t1), maxBeta))
	}
	return out
}

// rescaleZeroTerminalSNR is diffusers' rescale_zero_terminal_snr in float32
// tensor arithmetic.
func rescaleZeroTerminalSNR(betas []float32) []float32 {
	n := len(betas)
	alphas := make([]float32, n)
	for i, b := range betas {
		alphas[i] = 1 - b
	}
	ac := torchCumprod32(alphas)
	s := make([]float32, n)
	for i, a := range ac {
		s[i] = sqrt32(a)
	}
	s0, sT := s[0], s[n-1]
	scale := s0 / (s0 - sT)
	for i := range s {
		s[i] = (s[i] - sT) * scale
	}
	bar := make([]float32, n)
	for i, v := range s {
		bar[i] = v * v
	}
	out := make([]float32, n)
	out[0] = 1 - bar[0]
	for i := 1; i < n; i++ {
		out[i] = 1 - bar[i]/bar[i-1]
	}
	return out
}

// alphaTables holds a scheduler's betas and cumulative alphas (float32
// tensors in diffusers).
type alphaTables struct {
	betas, alphasCumprod []float32
}

// newAlphaTables builds betas and alphas_cumprod. terminalFix applies the
// 2^-24 floor the sigma-based schedulers put on the last cumulative alpha
// when the betas are rescaled to zero terminal SNR.
func newAlphaTables(p *Params, terminalFix bool, extra ...string) (alphaTables, error) {
	b, err := betasFor(p, extra...)
	if err != nil {
		return alphaTables{}, err
	}
	if p.RescaleBetasZeroSNR {
		b = rescaleZeroTerminalSNR(b)
	}
	alphas := make([]float32, len(b))
	for i, v := range b {
		alphas[i] = 1 - v
	}
	ac := torchCumprod32(alphas)
	if err := checkAlphas(p, b, ac); err != nil {
		return alphaTables{}, err
	}
	if p.RescaleBetasZeroSNR && terminalFix {
		ac[len(ac)-1] = 1.0 / (1 << 24)
	}
	return alphaTables{betas: b, alphasCumprod: ac}, nil
}

// trainSigmas is ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5 in float32,
// indexed by training timestep (ascending).
func (a alphaTables) trainSigmas() []float32 {
	out := make([]float32, len(a.alphasCumprod))
	for i, ac := range a.alphasCumprod {
		out[i] = sqrt32((1 - ac) / ac)
	}
	return out
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// log32, exp32 and friends stand in for torch's float32 vectorised math
// (SLEEF, within one ulp) with correctly rounded results.
func log32(x float32) float32   { return float32(math.Log(float64(x))) }
func exp32(x float32) float32   { return float32(math.Exp(float64(x))) }
func expm132(x float32) float32 { return float32(math.Expm1(float64(x))) }

// ---- numpy helpers (float64) ----

// npLinspace is np.linspace(start, stop, num) (endpoint=True) in float64.
func npLinspace(start, stop float64, num int) []float64 {
	out := make([]float64, num)
	if num == 0 {
		return out
	}
	if num == 1 {
		out[0] = start
		return out
	}
	div := float64(num - 1)
	delta := stop - start
	step := delta / div
	for i := range out {
		if step == 0 {
			out[i] = float64(i)/div*delta + start
		} else {
			out[i] = float64(i)*step + start
		}
	}
	out[num-1] = stop
	return out
}

// npArange is np.arange(start, stop, step) for float64 arguments: the
// length is ceil((stop-start)/step) and element i is start + i*delta
// with delta recomputed as (start+step) - start, as numpy's fill does.
func npArange(start, stop, step float64) []float64 {
	l := math.Ceil((stop - start) / step)
	if !(l > 0) {
		return nil
	}
	n := int(l)
	out := make([]float64, n)
	out[0] = start
	if n > 1 {
		out[1] = start + step
		delta := out[1] - out[0]
		for i := 2; i < n; i++ {
			out[i] = start + float64(i)*delta
		}
	}
	return out
}

// npInterp is np.interp(x, arange(len(fp)), fp) with fp widened to float64.
func npInterp(x float64, fp []float32) float64 {
	n := len(fp)
	switch {
	case x <= 0:
		return float64(fp[0])
	case x >= float64(n-1):
		return float64(fp[n-1])
	}
	j := int(math.Floor(x))
	if float64(j) == x {
		return float64(fp[j])
	}
	slope := (float64(fp[j+1]) - float64(fp[j])) / 1.0
	return slope*(x-float64(j)) + float64(fp[j])
}

// sigmaToT is diffusers' _sigma_to_t: the fractional training timestep
// whose log-sigma brackets log(sigma). logSigmas is np.log of the float32
// sigma table (a float32 array), so the bracket width is a float32
// difference.
func sigmaToT(sigma float64, logSigmas []float32) float64 {
	ls := math.Log(math.Max(sigma, 1e-10))
	n := len(logSigmas)
	// low_idx = index of the last entry with ls - log_sigmas[i] >= 0 (the
	// argmax of the cumulative count), 0 if none, clipped to n-2.
	low := 0
	for i, l := range logSigmas {
		if ls-float64(l) >= 0 {
			low = i
		}
	}
	if low > n-2 {
		low = n - 2
	}
	high := low + 1
	lo, hi := logSigmas[low], logSigmas[high]
	w := (float64(lo) - ls) / float64(lo-hi)
	w = math.Min(math.Max(w, 0), 1)
	return (1-w)*float64(low) + w*float64(high)
}

// logSigmas32 is np.log of a float32 sigma table (float32 results).
func logSigmas32(sigmas []float32) []float32 {
	out := make([]float32, len(sigmas))
	for i, s := range sigmas {
		out[i] = log32(s)
	}
	return out
}

// karrasSigmas is _convert_to_karras: rho = 7 between sigma_max and
// sigma_min (config overrides, else the ends of inSigmas), float64.
func karrasSigmas(p *Params, sigmaMin, sigmaMax float64, n int) []float64 {
	if p.SigmaMin != nil {
		sigmaMin = *p.SigmaMin
	}
	if p.SigmaMax != nil {
		sigmaMax = *p.SigmaMax
	}
	const rho = 7.0
	minInv := math.Pow(sigmaMin, 1/rho)
	maxInv := math.Pow(sigmaMax, 1/rho)
	ramp := npLinspace(0, 1, n)
	out := make([]float64, n)
	for i, r := range ramp {
		out[i] = math.Pow(maxInv+r*(minInv-maxInv), rho)
	}
	return out
}

// exponentialSigmas is _convert_to_exponential.
func exponentialSigmas(p *Params, sigmaMin, sigmaMax float64, n int) []float64 {
	if p.SigmaMin != nil {
		sigmaMin = *p.SigmaMin
	}
	if p.SigmaMax != nil {
		sigmaMax = *p.SigmaMax
	}
	l := npLinspace(math.Log(sigmaMax), math.Log(sigmaMin), n)
	for i, v := range l {
		l[i] = math.Exp(v)
	}
	return l
}

// betaSigmas is _convert_to_beta: sigma_min + ppf(1 - ramp) * (max - min)
// with the Beta(0.6, 0.6) quantile (scipy.stats.beta.ppf in diffusers).
func betaSigmas(p *Params, sigmaMin, sigmaMax float64, n int) []float64 {
	if p.SigmaMin != nil {
		sigmaMin = *p.SigmaMin
	}
	if p.SigmaMax != nil {
		sigmaMax = *p.SigmaMax
	}
	dist := distuv.Beta{Alpha: 0.6, Beta: 0.6}
	ramp := npLinspace(0, 1, n)
	out := make([]float64, n)
	for i, r := range ramp {
		t := 1 - r
		var q float64
		switch {
		case t <= 0:
			q = 0
		case t >= 1:
			q = 1
		default:
			q = dist.Quantile(t)
		}
		out[i] = sigmaMin + q*(sigmaMax-sigmaMin)
	}
	return out
}

// sigmaConversion applies the configured Karras / exponential / beta
// conversion to inSigmas (ordered from high to low noise), returning the
// new sigmas and their (unrounded) timesteps, or ok=false when none is
// configured.
func sigmaConversion(p *Params, inSigmas []float64, logSig []float32, n int) (sig, ts []float64, ok bool) {
	lo, hi := inSigmas[len(inSigmas)-1], inSigmas[0]
	switch {
	case p.UseKarrasSigmas:
		sig = karrasSigmas(p, lo, hi, n)
	case p.UseExponentialSigmas:
		sig = exponentialSigmas(p, lo, hi, n)
	case p.UseBetaSigmas:
		sig = betaSigmas(p, lo, hi, n)
	default:
		return nil, nil, false
	}
	ts = make([]float64, len(sig))
	for i, s := range sig {
		ts[i] = sigmaToT(s, logSig)
	}
	return sig, ts, true
}

// roundHalfEven is np.round.
func roundHalfEven(x float64) float64 { return math.RoundToEven(x) }

// spacing computes the "linspace" / "leading" / "trailing" timesteps of
// EulerDiscrete-style schedulers (float64 values of what diffusers stores;
// float32 rounding is applied by the caller where diffusers casts).
// float32Linspace selects np.linspace(..., dtype=np.float32).
func spacing(p *Params, n int) ([]float64, error) {
	N := p.NumTrainTimesteps
	var ts []float64
	switch p.TimestepSpacing {
	case "linspace":
		l := npLinspace(0, float64(N-1), n)
		ts = make([]float64, n)
		for i := range l {
			ts[i] = float64(float32(l[n-1-i]))
		}
	case "leading":
		ratio := N / n
		ts = make([]float64, n)
		for i := range ts {
			ts[i] = float64((n-1-i)*ratio) + float64(p.StepsOffset)
		}
	case "trailing":
		a := npArange(float64(N), 0, -float64(N)/float64(n))
		ts = make([]float64, len(a))
		for i, v := range a {
			ts[i] = float64(float32(roundHalfEven(v))) - 1
		}
	default:
		return nil, fmt.Errorf("%s: timestep_spacing %q is not supported (want linspace, leading or trailing)", p.Class, p.TimestepSpacing)
	}
	return ts, nil
}

// indexOf returns the index diffusers' index_for_timestep picks: the second
// match when there are several (so that img2img starting mid-schedule does
// not skip a sigma), else the first; -1 if absent.
func indexOf(timesteps []float64, t float64) int {
	first, count := -1, 0
	for i, v := range timesteps {
		if v == t {
			count++
			if count == 1 {
				first = i
			} else {
				return i
			}
		}
	}
	return first
}
