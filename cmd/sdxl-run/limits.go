package main

import (
	"flag"

	"github.com/sdxl-go/sdxl/jobspec"
)

// limitFlags bound the jobs of a server or worker: serve and worker
// share them, so that a front end and its workers refuse the same jobs.
type limitFlags struct {
	maxPixels, maxSteps, maxImages int
}

func (l *limitFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&l.maxPixels, "max-pixels", 2048*2048, "largest width × height of a job (and of input images)")
	fs.IntVar(&l.maxSteps, "max-steps", 150, "most denoising steps of a job")
	fs.IntVar(&l.maxImages, "max-images", 16, "most images of a job (batch_size × n_iter)")
}

func (l *limitFlags) limits() jobspec.Limits {
	return jobspec.Limits{MaxPixels: l.maxPixels, MaxSteps: l.maxSteps, MaxImages: l.maxImages}
}
