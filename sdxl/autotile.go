package sdxl

import (
	"errors"
	"fmt"
)

// DefaultAutoTilePixels is the image size above which an engine computing
// on the CPU tiles the VAE by itself: 2048×2048. Below it an untiled
// decode keeps diffusers' numbers exactly; above it an untiled decode's
// feature maps take over 8 GB.
const DefaultAutoTilePixels = 2048 * 2048

// autoTilePixels resolves Options.AutoTilePixels for the backend: the
// pixel rule applies to host-memory backends only (a GPU's limit is its
// memory, checked through the budget).
func autoTilePixels(opt Options) int {
	switch {
	case opt.AutoTilePixels < 0:
		return -1
	case opt.AutoTilePixels > 0:
		return opt.AutoTilePixels
	case opt.Backend.Name() == "cpu":
		return DefaultAutoTilePixels
	}
	return -1
}

// autoTile turns on VAE tiling, with a warning, for a request that did not
// ask for it when its image is over the engine's pixel threshold or when
// the untiled VAE would not fit in the memory budget but the tiled one
// would (diffusers' enable_tiling(); the result differs slightly from an
// untiled decode, so it is never done silently).
func (e *Engine) autoTile(pl *plan) error {
	r := &pl.req
	if r.VAETiling {
		return nil
	}
	reason := ""
	if e.autoTilePx > 0 && r.Width*r.Height > e.autoTilePx {
		reason = fmt.Sprintf("%dx%d is over the engine's %d pixels for an untiled decode", r.Width, r.Height, e.autoTilePx)
	} else if err := e.checkMemory(pl); err != nil {
		setTiling(pl, true)
		fits := e.checkMemory(pl) == nil
		setTiling(pl, false)
		var fe *FieldError
		if !fits || !errors.As(err, &fe) {
			return nil // the memory check refuses it either way
		}
		reason = "the untiled decode would not fit in memory"
	}
	if reason == "" {
		return nil
	}
	setTiling(pl, true)
	tile, _, err := pl.stages[len(pl.stages)-1].model.VAE.TileSizes(*r.tiling())
	if err != nil {
		return err
	}
	pl.warnings = append(pl.warnings, Warning{Field: "VAETiling", Message: fmt.Sprintf(
		"the VAE runs in tiles of %d pixels: %s (tiled images differ slightly from untiled ones; ask for tiling to silence this)", tile, reason)})
	return nil
}

// setTiling switches a plan's VAE tiling on or off (with the default tile
// size) for every stage.
func setTiling(pl *plan, on bool) {
	pl.req.VAETiling = on
	for _, st := range pl.stages {
		st.tiling = pl.req.tiling()
	}
}
