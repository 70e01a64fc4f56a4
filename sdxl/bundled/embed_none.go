//go:build nobundle

package bundled

import "embed"

// files is empty in builds with the nobundle tag.
var files embed.FS
