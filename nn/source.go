package nn

import (
	"fmt"
	"sort"

	"github.com/sdxl-go/sdxl/safetensors"
)

// FileSource serves weights from one or more safetensors files (the shards
// of one model). A name present in two files is an error at construction.
type FileSource struct {
	files   []*safetensors.File
	where   map[string]*safetensors.File
	names   []string
	scratch []byte
}

// NewFileSource indexes the given open files.
func NewFileSource(files ...*safetensors.File) (*FileSource, error) {
	s := &FileSource{files: files, where: map[string]*safetensors.File{}}
	for _, f := range files {
		for name := range f.Tensors {
			if g, dup := s.where[name]; dup {
				return nil, fmt.Errorf("weight %q is in both %s and %s", name, g.Path(), f.Path())
			}
			s.where[name] = f
			s.names = append(s.names, name)
		}
	}
	sort.Strings(s.names)
	return s, nil
}

// Names lists every weight.
func (s *FileSource) Names() []string { return s.names }

// Shape returns a weight's shape.
func (s *FileSource) Shape(name string) ([]int, bool) {
	f, ok := s.where[name]
	if !ok {
		return nil, false
	}
	return f.Tensors[name].Shape, true
}

// DType returns a weight's stored dtype.
func (s *FileSource) DType(name string) (safetensors.DType, bool) {
	f, ok := s.where[name]
	if !ok {
		return "", false
	}
	return f.Tensors[name].DType, true
}

// ReadFloat32 reads and widens one weight. Not safe for concurrent use.
func (s *FileSource) ReadFloat32(name string, dst []float32) error {
	f, ok := s.where[name]
	if !ok {
		return fmt.Errorf("missing weight %q", name)
	}
	in := f.Tensors[name]
	if n := int(in.End - in.Begin); cap(s.scratch) < n {
		s.scratch = make([]byte, n)
	}
	return f.ReadFloat32(name, dst, s.scratch)
}

// Renamed exposes a source under other names: Map(ourName) gives the name in
// the underlying source (or "" when it has no counterpart). It is how
// single-file checkpoints in the original Stability layout are read.
type Renamed struct {
	Src   Source
	names []string
	back  map[string]string
}

// NewRenamed builds a renamed view; fwd maps each source name to our name
// ("" drops it). Two source names mapping to one of ours is an error.
func NewRenamed(src Source, fwd func(srcName string) string) (*Renamed, error) {
	r := &Renamed{Src: src, back: map[string]string{}}
	for _, n := range src.Names() {
		ours := fwd(n)
		if ours == "" {
			continue
		}
		if prev, dup := r.back[ours]; dup {
			return nil, fmt.Errorf("weights %q and %q both map to %q", prev, n, ours)
		}
		r.back[ours] = n
		r.names = append(r.names, ours)
	}
	sort.Strings(r.names)
	return r, nil
}

// Names lists the renamed weights.
func (r *Renamed) Names() []string { return r.names }

// Shape returns the shape of a renamed weight.
func (r *Renamed) Shape(name string) ([]int, bool) {
	n, ok := r.back[name]
	if !ok {
		return nil, false
	}
	return r.Src.Shape(n)
}

// ReadFloat32 reads a renamed weight.
func (r *Renamed) ReadFloat32(name string, dst []float32) error {
	n, ok := r.back[name]
	if !ok {
		return fmt.Errorf("missing weight %q", name)
	}
	return r.Src.ReadFloat32(n, dst)
}
