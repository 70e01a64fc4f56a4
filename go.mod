module github.com/sdxl-go/sdxl

go 1.26

require (
	github.com/ebitengine/purego v0.11.3
	github.com/google/go-cmp v0.7.0
	github.com/x448/float16 v0.8.4
	gonum.org/v1/gonum v0.17.0
)
