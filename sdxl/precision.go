package sdxl

import (
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// Precision is the dtype the UNet's activations run in. The zero value,
// PrecisionAuto, follows the UNet's weights.
type Precision uint8

const (
	PrecisionAuto Precision = iota
	PrecisionF32
	PrecisionF16
	PrecisionBF16
)

// PrecisionOf is the explicit precision of a dtype.
func PrecisionOf(dt tensor.DType) Precision {
	switch dt {
	case tensor.F16:
		return PrecisionF16
	case tensor.BF16:
		return PrecisionBF16
	}
	return PrecisionF32
}

// dtype returns the explicit dtype, or false for PrecisionAuto.
func (p Precision) dtype() (tensor.DType, bool) {
	switch p {
	case PrecisionF32:
		return tensor.F32, true
	case PrecisionF16:
		return tensor.F16, true
	case PrecisionBF16:
		return tensor.BF16, true
	}
	return tensor.F32, false
}

func (p Precision) String() string {
	if dt, ok := p.dtype(); ok {
		return dt.String()
	}
	if p == PrecisionAuto {
		return "auto"
	}
	return fmt.Sprintf("Precision(%d)", uint8(p))
}
