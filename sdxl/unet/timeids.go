package unet

// Micro-conditioning ids ("add_time_ids") exactly as diffusers' SDXL
// pipelines build them in _get_add_time_ids. Sizes are (height, width),
// crop coordinates (top, left), all in pixels.

// Diffusers' default aesthetic scores (img2img/refiner pipelines).
const (
	DefaultAestheticScore         = 6.0
	DefaultNegativeAestheticScore = 2.5
)

// TimeIDParams are the micro-conditioning arguments of a pipeline call.
// Unset negative sizes are nil (diffusers' None).
type TimeIDParams struct {
	OriginalSize [2]int
	CropsTopLeft [2]int
	TargetSize   [2]int

	NegativeOriginalSize *[2]int
	NegativeCropsTopLeft [2]int // diffusers' default (0, 0)
	NegativeTargetSize   *[2]int

	// AestheticScore and NegativeAestheticScore are used by models that
	// require them (the refiner); pipelines default to 6.0 and 2.5.
	AestheticScore         float64
	NegativeAestheticScore float64
}

// BaseTimeIDs returns the ids of StableDiffusionXLPipeline (txt2img):
// original_size + crops_coords_top_left + target_size (6 values). The
// negative ids are built from the negative sizes and crops only when both
// negative_original_size and negative_target_size are given; otherwise
// they equal the positive ids (negative crops alone are ignored, as in
// diffusers).
func BaseTimeIDs(p TimeIDParams) (pos, neg []float32) {
	pos = ids(p.OriginalSize, p.CropsTopLeft, p.TargetSize[0], p.TargetSize[1])
	if p.NegativeOriginalSize != nil && p.NegativeTargetSize != nil {
		neg = ids(*p.NegativeOriginalSize, p.NegativeCropsTopLeft, p.NegativeTargetSize[0], p.NegativeTargetSize[1])
	} else {
		neg = append([]float32(nil), pos...)
	}
	return pos, neg
}

// Img2ImgTimeIDs returns the ids of StableDiffusionXLImg2ImgPipeline. Unset
// negative sizes default to the positive ones. With requiresAesthetics (the
// refiner) the ids are original_size + crops + (aesthetic_score,) and
// negative_original_size + negative_crops + (negative_aesthetic_score,)
// (5 values). Without it they are original + crops + target and
// negative_original + crops + negative_target: diffusers uses the POSITIVE
// crop coordinates in the negative ids there (a quirk reproduced on
// purpose).
func Img2ImgTimeIDs(p TimeIDParams, requiresAesthetics bool) (pos, neg []float32) {
	negOrig, negTarget := p.OriginalSize, p.TargetSize
	if p.NegativeOriginalSize != nil {
		negOrig = *p.NegativeOriginalSize
	}
	if p.NegativeTargetSize != nil {
		negTarget = *p.NegativeTargetSize
	}
	if requiresAesthetics {
		pos = append(ids(p.OriginalSize, p.CropsTopLeft), float32(p.AestheticScore))
		neg = append(ids(negOrig, p.NegativeCropsTopLeft), float32(p.NegativeAestheticScore))
		return pos, neg
	}
	pos = ids(p.OriginalSize, p.CropsTopLeft, p.TargetSize[0], p.TargetSize[1])
	neg = ids(negOrig, p.CropsTopLeft, negTarget[0], negTarget[1])
	return pos, neg
}

func ids(size, crop [2]int, rest ...int) []float32 {
	out := []float32{float32(size[0]), float32(size[1]), float32(crop[0]), float32(crop[1])}
	for _, v := range rest {
		out = append(out, float32(v))
	}
	return out
}
