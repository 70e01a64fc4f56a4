package nn

import "github.com/sdxl-go/sdxl/tensor"

// Recorder observes module outputs during a forward pass. Modules call it
// with their path in diffusers naming ("down_blocks.1.attentions.0.
// transformer_blocks.0.attn2") and their output, and with path+".input"
// and their first input. The tensor is only valid during the call (the
// model may free it right after), so a recorder that keeps it must copy it.
//
// Every forward takes a Recorder argument; nil disables capture, and then a
// hook costs one nil check and no allocation (paths are built once, when
// the model is).
type Recorder interface {
	Record(path string, t *tensor.Tensor)
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(path string, t *tensor.Tensor)

// Record implements Recorder.
func (f RecorderFunc) Record(path string, t *tensor.Tensor) { f(path, t) }

// RecordOut reports a module's output to rec when rec is non-nil.
func RecordOut(rec Recorder, path string, out *tensor.Tensor) {
	if rec != nil {
		rec.Record(path, out)
	}
}

// RecordIn reports a module's first input as path+".input". The string is
// only built when recording.
func RecordIn(rec Recorder, path string, in *tensor.Tensor) {
	if rec != nil {
		rec.Record(path+".input", in)
	}
}

// RecordChild reports the output of a child module (path.child) that has
// no Path of its own, e.g. a Linear inside an Attention.
func RecordChild(rec Recorder, path, child string, out *tensor.Tensor) {
	if rec != nil {
		rec.Record(Sub(path, child), out)
	}
}

// Sub joins a module path and a child name ("" parent gives the child).
func Sub(path, child string) string {
	if path == "" {
		return child
	}
	return path + "." + child
}

// Prefixed reports to rec under prefix+path: a model run inside another's
// tree (a ControlNet under "controlnet.") keeps its own module paths. It
// returns nil for a nil rec, so the nil fast path is kept.
func Prefixed(rec Recorder, prefix string) Recorder {
	if rec == nil {
		return nil
	}
	return prefixed{rec, prefix}
}

type prefixed struct {
	rec    Recorder
	prefix string
}

func (p prefixed) Record(path string, t *tensor.Tensor) { p.rec.Record(p.prefix+path, t) }
