// Package nn holds the neural-network layers shared by the SDXL models and
// the machinery that binds their weights to checkpoint names.
//
// A layer is a small struct of *tensor.Tensor fields plus a Forward method.
// Struct tags name each field as it is named in diffusers/transformers
// checkpoints:
//
//	type Linear struct {
//		Weight *tensor.Tensor `st:"weight"`
//		Bias   *tensor.Tensor `st:"bias"`
//	}
//
// Tags apply to *tensor.Tensor fields (a parameter), to struct or *struct
// fields (a sub-module: its parameters get the prefix "name."), and to slices
// of those ("name.0.", "name.1.", ...). A nil tensor or nil sub-module is
// simply absent (e.g. a bias the config turns off). Fields without a tag, or
// tagged "-", are not parameters.
//
// Models are built from their configs out of meta tensors (shape only, see
// tensor.Meta), so Params lists every expected key and shape before a single
// weight is read; Load then fills them strictly.
//
// A Forward computes on a tensor.Scope made from the backend it is given
// (see tensor.Scope): its intermediates are freed as soon as they are read
// for the last time, and it never frees tensors it did not make, except
// that called with its caller's scope it consumes the caller's temporaries
// it is handed (a caller that reads an input again passes a Borrow). Called
// with a plain Backend it returns a tensor the caller frees.
package nn

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/sdxl-go/sdxl/tensor"
)

// Param is one named parameter slot of a module tree.
type Param struct {
	Name string
	// Ptr points at the struct field, so loaders can replace the meta
	// tensor by a materialised one.
	Ptr *(*tensor.Tensor)
}

// Tensor returns the current tensor in the slot.
func (p Param) Tensor() *tensor.Tensor { return *p.Ptr }

var tensorPtrType = reflect.TypeOf((*tensor.Tensor)(nil))

// Params lists the parameters of module m (a pointer to a struct) in field
// order, with names prefixed by prefix (use "" for none).
func Params(m any, prefix string) []Param {
	var out []Param
	walk(reflect.ValueOf(m), prefix, &out)
	return out
}

func walk(v reflect.Value, prefix string, out *[]Param) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("st")
		if !ok || tag == "-" || !f.IsExported() {
			continue
		}
		name := prefix + tag
		fv := v.Field(i)
		if tag == "" { // inline: the sub-module's names carry no extra prefix
			name = prefix
		}
		walkField(fv, name, out)
	}
}

func walkField(fv reflect.Value, name string, out *[]Param) {
	switch {
	case fv.Type() == tensorPtrType:
		if !fv.IsNil() {
			*out = append(*out, Param{Name: name, Ptr: fv.Addr().Interface().(**tensor.Tensor)})
		}
	case fv.Kind() == reflect.Slice || fv.Kind() == reflect.Array:
		for j := 0; j < fv.Len(); j++ {
			walkField(fv.Index(j), joinName(name, strconv.Itoa(j)), out)
		}
	case fv.Kind() == reflect.Struct || fv.Kind() == reflect.Pointer || fv.Kind() == reflect.Interface:
		p := name
		if p != "" && p[len(p)-1] != '.' {
			p += "."
		}
		walk(fv, p, out)
	}
}

func joinName(a, b string) string {
	if a == "" || a[len(a)-1] == '.' {
		return a + b
	}
	return a + "." + b
}

// CountParams returns the number of scalar parameters of m.
func CountParams(m any) int64 {
	var n int64
	for _, p := range Params(m, "") {
		n += int64(p.Tensor().Numel())
	}
	return n
}

// Source is a set of named weights, e.g. one or more safetensors files,
// possibly under a renaming (single-file checkpoints).
type Source interface {
	// Names lists every weight the source holds.
	Names() []string
	// Shape returns a weight's shape, or ok=false if absent.
	Shape(name string) (shape []int, ok bool)
	// ReadFloat32 reads a weight converted to float32 into dst.
	ReadFloat32(name string, dst []float32) error
}

// LoadOptions tune Load.
type LoadOptions struct {
	// DType is the storage type of the loaded tensors (default F32).
	DType tensor.DType
	// Prefix is prepended to every parameter name when looking it up in the
	// source (e.g. "text_model." or "model.diffusion_model.").
	Prefix string
	// Ignore reports source keys that may be present without a matching
	// parameter (buffers such as position_ids). Keys outside Prefix are
	// never considered unexpected.
	Ignore func(name string) bool
	// Progress is called after each tensor with the number loaded so far and
	// the total.
	Progress func(done, total int)
}

// Load materialises every parameter of m from src on backend b. It fails,
// naming the key, when a parameter is missing, has another shape, or when
// src holds a key under Prefix that no parameter claims.
func Load(b tensor.Backend, m any, src Source, opt LoadOptions) error {
	params := Params(m, "")
	want := make(map[string]bool, len(params))
	for _, p := range params {
		key := opt.Prefix + p.Name
		want[key] = true
		shape, ok := src.Shape(key)
		if !ok {
			return fmt.Errorf("missing weight %q", key)
		}
		if !tensor.Shape(shape).Equal(p.Tensor().Shape()) {
			return fmt.Errorf("weight %q has shape %v, the model expects %v", key, shape, p.Tensor().Shape())
		}
	}
	for _, k := range src.Names() {
		if len(k) < len(opt.Prefix) || k[:len(opt.Prefix)] != opt.Prefix || want[k] {
			continue
		}
		if opt.Ignore != nil && opt.Ignore(k) {
			continue
		}
		return fmt.Errorf("unexpected weight %q (no parameter of the model has this name)", k)
	}
	var buf []float32
	for i, p := range params {
		key := opt.Prefix + p.Name
		shape := p.Tensor().Shape()
		n := shape.Numel()
		if cap(buf) < n {
			buf = make([]float32, n)
		}
		buf = buf[:n]
		if err := src.ReadFloat32(key, buf); err != nil {
			return err
		}
		*p.Ptr = b.FromFloat32(opt.DType, shape, buf)
		if opt.Progress != nil {
			opt.Progress(i+1, len(params))
		}
	}
	return nil
}

// InitRandom materialises every parameter with deterministic pseudo-random
// values of a plausible scale (uniform in ±1/sqrt(fan_in)); norms' weights
// are 1 and biases small. It is for benchmarks and shape tests: random
// full-size weights cost exactly what real ones cost. Each parameter has
// its own stream (seeded by the seed and its index), so parameters are
// filled in parallel and the values do not depend on the thread count.
func InitRandom(b tensor.Backend, m any, dt tensor.DType, seed uint64) {
	params := Params(m, "")
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []float32
			for i := range work {
				buf = fillRandom(params[i], seed, uint64(i), buf)
				// Backends are safe for concurrent use; each slot is
				// written by one goroutine.
				*params[i].Ptr = b.FromFloat32(dt, params[i].Tensor().Shape(), buf)
			}
		}()
	}
	for i := range params {
		work <- i
	}
	close(work)
	wg.Wait()
}

// fillRandom computes parameter p's random values into buf (grown as
// needed) with an xorshift64* stream: small, deterministic, no global state.
func fillRandom(p Param, seed, index uint64, buf []float32) []float32 {
	s := (seed*0x9E3779B97F4A7C15+index)*0xBF58476D1CE4E5B9 + 1
	next := func() float32 {
		s ^= s >> 12
		s ^= s << 25
		s ^= s >> 27
		return float32((s*2685821657736338717)>>40)/float32(1<<24)*2 - 1
	}
	shape := p.Tensor().Shape()
	n := shape.Numel()
	if cap(buf) < n {
		buf = make([]float32, n)
	}
	buf = buf[:n]
	switch {
	case len(shape) == 1 && isNormWeight(p.Name):
		for i := range buf {
			buf[i] = 1
		}
	case len(shape) == 1:
		for i := range buf {
			buf[i] = 0.02 * next()
		}
	default:
		scale := 1 / float32(sqrt(float64(n/shape[0])))
		for i := range buf {
			buf[i] = scale * next()
		}
	}
	return buf
}

// isNormWeight: in these models the only one-dimensional "weight"
// parameters are normalisation scales, which start at 1.
func isNormWeight(name string) bool { return strings.HasSuffix(name, "weight") }

func sqrt(x float64) float64 { return math.Sqrt(x) }
