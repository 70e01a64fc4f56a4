package cuda

import (
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// denseStrides returns the row-major element strides of shape.
func denseStrides(shape []int) []int {
	st := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = acc
		acc *= shape[i]
	}
	return st
}

// collapse simplifies a strided index space: it drops dimensions of size 1
// and merges each dimension into the one before it when that is possible
// for every stride set (outer stride == inner stride * inner size), so
// that e.g. a same-shape Add becomes a rank-1 loop. The result has at least
// one dimension. Strided kernels take at most maxRank dimensions; so few
// are left after collapsing that exceeding it means a tensor of rank > 8
// with no mergeable dimensions, which the kernels do not support.
func collapse(op string, shape []int, strides ...[]int) ([]int, [][]int) {
	var cs []int
	cst := make([][]int, len(strides))
	for i, n := range shape {
		if n == 1 {
			continue
		}
		if len(cs) > 0 {
			last := len(cs) - 1
			merge := true
			for k, s := range strides {
				if cst[k][last] != s[i]*n {
					merge = false
					break
				}
			}
			if merge {
				cs[last] *= n
				for k, s := range strides {
					cst[k][last] = s[i]
				}
				continue
			}
		}
		cs = append(cs, n)
		for k, s := range strides {
			cst[k] = append(cst[k], s[i])
		}
	}
	if len(cs) == 0 {
		cs = []int{1}
		for k := range cst {
			cst[k] = []int{0}
		}
	}
	if len(cs) > maxRank {
		panic(fmt.Sprintf("cuda: %s: index space %v has %d dimensions after merging (at most %d supported)", op, shape, len(cs), maxRank))
	}
	return cs, cst
}

// outerInner splits shape around axis: the product of the dimensions
// before it, its size, and the product after it.
func outerInner(shape tensor.Shape, axis int) (outer, n, inner int) {
	outer, inner = 1, 1
	for i, d := range shape {
		switch {
		case i < axis:
			outer *= d
		case i > axis:
			inner *= d
		}
	}
	return outer, shape[axis], inner
}
