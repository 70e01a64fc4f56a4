//go:build !nobundle

package bundled

import "embed"

//go:embed sdxl-small-base
var files embed.FS
