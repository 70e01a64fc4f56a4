package sdxl

import (
	"context"
	"fmt"

	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// Inpainting is StableDiffusionXLInpaintPipeline (diffusers 0.35): an
// img2img request with a mask (Request.MaskImage or Mask, 1 = repaint).
// With the ordinary 4-channel UNet it is masked img2img: after every step
// the latents outside the mask are replaced by the original image's
// latents, noised to the next step's level (un-noised after the last
// step). With a 9-channel inpainting UNet (in_channels 9) the UNet sees
// [latents, latent mask, masked-image latents] and nothing is blended. The
// decoded image is not pasted back over the original (diffusers' default
// without padding_mask_crop). One model runs: the base (or an inpainting
// model), else the refiner alone.
//
// The random draws follow diffusers, all from the one generator: the
// image's VAE posterior sample (for the 4-channel UNet, or a strength
// below 1), the latent noise, then the masked image's posterior sample (also
// for the 4-channel UNet, which never uses it).

// DefaultInpaintStrength is diffusers' default strength with a mask: not
// 1, so that the image is encoded (one more draw) and int(steps*0.9999)
// steps run (one fewer).
const DefaultInpaintStrength = 0.9999

// inpaint is an inpainting stage's state: planned (the masks), then
// filled by prepareInpaint at run time.
type inpaint struct {
	nine bool
	// pixels is the mask at the image's size, mask the latent mask [h*w].
	pixels *imageio.Mask
	mask   []float32
	shape  [4]int // latents [n, 4, h, w]
	// imageLatents (4-channel) and maskedLatents (9-channel) are
	// [n, 4, h, w]; noise is the initial draw, reused by the blend.
	imageLatents, maskedLatents, noise []float32
}

// maskField names the request's mask field in errors.
func maskField(r *Request) string {
	if r.MaskImage != nil {
		return "MaskImage"
	}
	return "Mask"
}

// resolveInpaintImage sizes an inpainting request as diffusers' inpainting
// pipeline does: Width and Height default to the model's size (not the
// image's), and an InitImage is resized to them (Lanczos, aspect ratio not
// kept), with a warning when that changes it.
func (p *Pipeline) resolveInpaintImage(pl *plan) error {
	r := &pl.req
	if r.InitImage == nil {
		return nil
	}
	if err := p.resolveSize(r); err != nil {
		return err
	}
	m := r.InitImage
	pre, err := imageio.PreprocessTo(m, r.Width, r.Height)
	if err != nil {
		return fieldErr("InitImage", nil, "%v", err)
	}
	if pre != m {
		pl.warnings = append(pl.warnings, Warning{Field: "InitImage", Message: fmt.Sprintf(
			"the input image is %dx%d; resized to %dx%d as diffusers' inpainting pipeline does (give the width and height to choose the size)", m.W, m.H, r.Width, r.Height)})
	}
	r.Image, r.ImageShape = pre.Normalized()
	r.InitImage = nil
	return nil
}

// planInpaint checks an inpainting request against the model that runs it
// (or any request against a 9-channel UNet, which only inpaints),
// processes the mask picture, and returns the stage's inpainting state
// (nil without a mask).
func (p *Pipeline) planInpaint(pl *plan, m *Model) (*inpaint, error) {
	r := &pl.req
	nine := m.UNet.InChannels() == 9
	field := maskField(r)
	switch {
	case !r.inpainting() && nine:
		return nil, fieldErr("MaskImage", nil, "%s has an inpainting UNet (9 input channels): give an input image and a mask", m.Path)
	case !r.inpainting():
		return nil, nil
	case r.ImageIsLatents:
		return nil, fieldErr("Image", nil, "inpainting needs the image's pixels, not latents (the masked image is encoded)")
	case !nine && m.UNet.InChannels() != 4:
		return nil, fieldErr(field, nil, "%s: inpainting needs a UNet with 4 or 9 input channels, this one has %d", m.Path, m.UNet.InChannels())
	}
	h, w := r.ImageShape[2], r.ImageShape[3]
	if r.MaskImage != nil {
		mi := r.MaskImage
		pm, err := imageio.ProcessMask(mi, w, h)
		if err != nil {
			return nil, fieldErr(field, nil, "%v", err)
		}
		if mi.W != w || mi.H != h {
			pl.warnings = append(pl.warnings, Warning{Field: field, Message: fmt.Sprintf(
				"the mask is %dx%d; resized to the image's %dx%d as diffusers does", mi.W, mi.H, w, h)})
		}
		r.Mask = pm.Pix
	}
	if len(r.Mask) != h*w {
		return nil, fieldErr(field, nil, "has %d values, the %dx%d image needs %d (one per pixel)", len(r.Mask), w, h, w*h)
	}
	in := &inpaint{nine: nine, pixels: &imageio.Mask{W: w, H: h, Pix: r.Mask}}
	lm, err := in.pixels.Latent(m.VAE.ScaleFactor())
	if err != nil {
		return nil, fieldErr(field, nil, "%v", err)
	}
	in.mask = lm.Pix
	return in, nil
}

// prepareInpaint is the inpainting pipeline's prepare_latents and
// prepare_mask_latents: it returns the initial latents and fills the
// stage's inpainting inputs, drawing in diffusers' order.
func (p *Pipeline) prepareInpaint(ctx context.Context, r *Request, st *stage, gen sched.Generator, randn func(int) []float32) ([]float32, [4]int, error) {
	m, n, in := st.model, r.NumImages, st.inp
	masked, err := imageio.MaskImage(st.image, st.imageShape, in.pixels)
	if err != nil {
		return nil, in.shape, err
	}
	full := r.Strength == 1
	encode := func(img []float32) ([]float32, error) {
		var lat []float32
		err := p.onDevice(func() (err error) {
			lat, _, err = p.encodeImage(ctx, m, &stage{image: img, imageShape: st.imageShape, tiling: st.tiling}, gen, n)
			return err
		}, m.VAE)
		return lat, err
	}
	if !in.nine || !full {
		if in.imageLatents, err = encode(st.image); err != nil {
			return nil, in.shape, err
		}
	}
	f := m.VAE.ScaleFactor()
	in.shape = [4]int{n, m.VAE.Config().LatentChannels, in.pixels.H / f, in.pixels.W / f}
	in.noise = randn(n * in.shape[1] * in.shape[2] * in.shape[3])
	var latents []float32
	if full {
		sigma := float32(st.sched.InitNoiseSigma())
		latents = make([]float32, len(in.noise))
		for i, v := range in.noise {
			latents[i] = v * sigma
		}
	} else if latents, err = st.sched.AddNoise(in.imageLatents, in.noise, st.noiseT); err != nil {
		return nil, in.shape, err
	}
	if in.maskedLatents, err = encode(masked); err != nil {
		return nil, in.shape, err
	}
	if !in.nine {
		in.maskedLatents = nil // drawn, never used: diffusers does the same
	}
	return latents, in.shape, nil
}

// modelInput returns the UNet input of a step and its channel count: the
// scheduler-scaled latents (rows = n or 2n with guidance, [uncond; cond]),
// followed for the 9-channel UNet by the latent mask and the masked-image
// latents, row by row.
func (in *inpaint) modelInput(scaled []float32, rows int) ([]float32, int) {
	c := in.shape[1]
	if !in.nine {
		return scaled, c
	}
	plane := in.shape[2] * in.shape[3]
	per := c * plane
	out := make([]float32, 0, rows*(2*c+1)*plane)
	for r := range rows {
		out = append(out, scaled[r*per:(r+1)*per]...)
		out = append(out, in.mask...)
		k := r % in.shape[0]
		out = append(out, in.maskedLatents[k*per:(k+1)*per]...)
	}
	return out, 2*c + 1
}

// blend is the 4-channel UNet's step i epilogue: (1 - m) * orig + m *
// latents, orig the image latents noised to timesteps[i+1] (un-noised
// after the last step), in float32 as torch computes it.
func (in *inpaint) blend(s sched.Scheduler, latents []float32, ts []float64, i int) ([]float32, error) {
	if in.nine {
		return latents, nil
	}
	orig := in.imageLatents
	if i < len(ts)-1 {
		var err error
		if orig, err = s.AddNoise(in.imageLatents, in.noise, ts[i+1]); err != nil {
			return nil, err
		}
	}
	plane := len(in.mask)
	out := make([]float32, len(latents))
	for k, v := range latents {
		mk := in.mask[k%plane]
		out[k] = float32((1-mk)*orig[k]) + float32(mk*v)
	}
	return out, nil
}
