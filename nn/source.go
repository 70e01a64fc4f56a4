package nn

import (
	"fmt"
	"sort"
)

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
