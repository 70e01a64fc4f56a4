package vae

import (
	"fmt"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl/config"
)

// supported refuses configs outside the SDXL VAE family.
func supported(c *config.VAEConfig) error {
	if c == nil {
		return fmt.Errorf("vae: nil config")
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("vae config: %w", err)
	}
	if bad := c.NonSDXL(); len(bad) > 0 {
		return fmt.Errorf("vae: config outside the SDXL VAE family, not supported: %s", strings.Join(bad, ", "))
	}
	return nil
}
