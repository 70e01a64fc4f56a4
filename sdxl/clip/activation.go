package clip

import "fmt"

// activation names the MLP non-linearity.
type activation uint8

const (
	actQuickGELU activation = iota
	actGELU
)

// activationOf maps the transformers ACT2FN names that CLIP text encoders
// use to backend ops. Other names config accepts (gelu_new, relu, ...) have
// no backend op and are refused by name.
func activationOf(name string) (activation, error) {
	switch name {
	case "quick_gelu": // x * sigmoid(1.702 x): CLIP ViT-L
		return actQuickGELU, nil
	case "gelu": // torch's exact erf GELU: OpenCLIP bigG
		return actGELU, nil
	}
	return 0, fmt.Errorf("clip: hidden_act %q is not supported (want quick_gelu or gelu)", name)
}
