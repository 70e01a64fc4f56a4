package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	"github.com/sdxl-go/sdxl/safetensors"
)

// WeightSet is the weights of one component, possibly spread over shards:
// tensors are looked up by name across its safetensors files. It satisfies
// nn.Source (Names, Shape, ReadFloat32). Reads are safe for concurrent use.
type WeightSet struct {
	files []*safetensors.File
	where map[string]*safetensors.File
	names []string
	// scratch recycles read buffers between ReadFloat32 calls.
	scratch sync.Pool
}

// OpenWeightFiles opens safetensors files as one set. A tensor name found
// in two files is an error naming both.
func OpenWeightFiles(paths ...string) (*WeightSet, error) {
	if len(paths) == 0 {
		return nil, errors.New("no weight files given")
	}
	files := make([]*safetensors.File, 0, len(paths))
	for _, p := range paths {
		f, err := safetensors.Open(p)
		if err != nil {
			for _, g := range files {
				g.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	ws, err := NewWeightSet(files...)
	if err != nil {
		for _, g := range files {
			g.Close()
		}
		return nil, err
	}
	return ws, nil
}

// NewWeightSet indexes already open files; Close closes them.
func NewWeightSet(files ...*safetensors.File) (*WeightSet, error) {
	ws := &WeightSet{files: files, where: map[string]*safetensors.File{}}
	for _, f := range files {
		for name := range f.Tensors {
			if g, dup := ws.where[name]; dup {
				return nil, fmt.Errorf("tensor %q is in both %s and %s", name, g.Path(), f.Path())
			}
			ws.where[name] = f
			ws.names = append(ws.names, name)
		}
	}
	sort.Strings(ws.names)
	return ws, nil
}

// checkIndex verifies a shard index against the opened shards: every
// weight_map entry must be in the file it names.
func (ws *WeightSet) checkIndex(indexPath string) error {
	idx, err := readShardIndex(indexPath)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(idx.WeightMap))
	for n := range idx.WeightMap {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		shard := idx.WeightMap[name]
		f, ok := ws.where[name]
		if !ok {
			return fmt.Errorf("%s: tensor %q should be in %s, which does not hold it", indexPath, name, shard)
		}
		if filepath.Base(f.Path()) != shard {
			return fmt.Errorf("%s: tensor %q should be in %s but is in %s", indexPath, name, shard, filepath.Base(f.Path()))
		}
	}
	return nil
}

// Close closes every file of the set.
func (ws *WeightSet) Close() error {
	var first error
	for _, f := range ws.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Files returns the open files, in the order given.
func (ws *WeightSet) Files() []*safetensors.File { return ws.files }

// Paths returns the file paths, in the order given.
func (ws *WeightSet) Paths() []string {
	out := make([]string, len(ws.files))
	for i, f := range ws.files {
		out[i] = f.Path()
	}
	return out
}

// Names lists every tensor name, sorted.
func (ws *WeightSet) Names() []string { return ws.names }

// Len is the number of tensors.
func (ws *WeightSet) Len() int { return len(ws.names) }

// File returns the file holding name.
func (ws *WeightSet) File(name string) (*safetensors.File, bool) {
	f, ok := ws.where[name]
	return f, ok
}

// Info describes tensor name.
func (ws *WeightSet) Info(name string) (safetensors.Info, bool) {
	f, ok := ws.where[name]
	if !ok {
		return safetensors.Info{}, false
	}
	return f.Info(name)
}

// Shape returns a tensor's shape (shared; do not modify).
func (ws *WeightSet) Shape(name string) ([]int, bool) {
	in, ok := ws.Info(name)
	return in.Shape, ok
}

// DType returns a tensor's stored dtype.
func (ws *WeightSet) DType(name string) (safetensors.DType, bool) {
	in, ok := ws.Info(name)
	return in.DType, ok
}

func (ws *WeightSet) missing(name string) error {
	if len(ws.files) == 1 {
		return fmt.Errorf("%s: no tensor %q", ws.files[0].Path(), name)
	}
	return fmt.Errorf("no tensor %q in the %d shards %v", name, len(ws.files), ws.Paths())
}

// Raw reads a tensor's stored bytes into buf (grown if needed).
func (ws *WeightSet) Raw(name string, buf []byte) ([]byte, error) {
	f, ok := ws.where[name]
	if !ok {
		return nil, ws.missing(name)
	}
	return f.Raw(name, buf)
}

// ReadFloat32 reads a tensor widened to float32 into dst, whose length must
// be its element count. Only floating-point tensors are read: an integer
// or boolean tensor where a weight is expected is an error naming it (it
// would convert silently to meaningless values). F16, BF16, F64 and
// float8 widen (or, F64, round) to float32 exactly as torch's .float()
// does, so a BF16 checkpoint loads like an F32 one of the same values.
func (ws *WeightSet) ReadFloat32(name string, dst []float32) error {
	f, ok := ws.where[name]
	if !ok {
		return ws.missing(name)
	}
	bp, _ := ws.scratch.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	in, _ := f.Info(name)
	if err := floatOnly(f, in); err != nil {
		ws.scratch.Put(bp)
		return err
	}
	if n := int(in.End - in.Begin); cap(*bp) < n {
		*bp = make([]byte, n)
	}
	err := f.ReadFloat32(name, dst, *bp)
	ws.scratch.Put(bp)
	return err
}

// Float32 reads a tensor widened to float32 with its shape.
func (ws *WeightSet) Float32(name string) ([]float32, []int, error) {
	f, ok := ws.where[name]
	if !ok {
		return nil, nil, ws.missing(name)
	}
	if in, _ := f.Info(name); floatOnly(f, in) != nil {
		return nil, nil, floatOnly(f, in)
	}
	return f.Float32(name)
}

// floatOnly refuses a tensor that is not floating point.
func floatOnly(f *safetensors.File, in safetensors.Info) error {
	if in.DType.IsFloat() {
		return nil
	}
	return fmt.Errorf("%s: tensor %q is stored as %s; model weights must be floating point (F32, F16 or BF16; F64 and float8 are also read)",
		f.Path(), in.Name, in.DType)
}
