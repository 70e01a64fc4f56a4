package config

import (
	"fmt"
	"math"
)

// Limits on config values. They lie far above any released SDXL-family
// model (SDXL: 3 or 4 blocks, 2 resnets per block, transformer depth up to
// 10 and 75 transformer blocks in all, 32 text layers, widths up to 5120,
// a 49408-token vocabulary) and exist so that a damaged or hostile config
// is refused with an error naming the key before anything is built from
// it: the meta model of a config at these limits is small and quick to
// build (see TestConfigAtLimitsIsCheap), so a config that claims more than
// its weight file holds is caught by the strict loader's key and shape
// check before any weight is allocated.
const (
	// MaxBlocks bounds the down/up blocks of a UNet or VAE (a VAE with n
	// blocks scales images by 2^(n-1)).
	MaxBlocks = 8
	// MaxLayersPerBlock bounds the resnets of one block.
	MaxLayersPerBlock = 16
	// MaxTransformerDepth bounds the transformer blocks after one resnet.
	MaxTransformerDepth = 64
	// MaxTransformerBlocks bounds the transformer blocks of a whole UNet.
	MaxTransformerBlocks = 1024
	// MaxTextLayers bounds a text encoder's num_hidden_layers.
	MaxTextLayers = 256
	// MaxWidth bounds every channel count, hidden size, head count and
	// embedding width.
	MaxWidth = 1 << 16
	// MaxVocab bounds a text encoder's vocab_size.
	MaxVocab = 1 << 20
	// MaxPositions bounds a text encoder's max_position_embeddings.
	MaxPositions = 1 << 14
	// MaxKernel bounds convolution kernel sizes.
	MaxKernel = 15
	// MaxSampleSize bounds sample_size (in latent pixels for a UNet, image
	// pixels for a VAE).
	MaxSampleSize = 1 << 16
)

// inRange checks lo <= v <= hi, naming key.
func inRange(key string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s = %d, want %d to %d", key, v, lo, hi)
	}
	return nil
}

// intField is one integer key and its value, for table-driven checks.
type intField struct {
	key string
	v   int
}

// checkRanges checks each field against lo..hi.
func checkRanges(lo, hi int, fs ...intField) error {
	for _, f := range fs {
		if err := inRange(f.key, f.v, lo, hi); err != nil {
			return err
		}
	}
	return nil
}

// finite checks that v is a finite number, naming key.
func finite(key string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s = %g, want a finite number", key, v)
	}
	return nil
}

// floatField is one number key and its value.
type floatField struct {
	key string
	v   float64
}

// allFinite checks that every field is finite.
func allFinite(fs ...floatField) error {
	for _, f := range fs {
		if err := finite(f.key, f.v); err != nil {
			return err
		}
	}
	return nil
}

// positive checks that v is finite and > 0, naming key.
func positive(key string, v float64) error {
	if !(v > 0) || math.IsInf(v, 0) {
		return fmt.Errorf("%s = %g, want a finite number > 0", key, v)
	}
	return nil
}
