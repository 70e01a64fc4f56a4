package tensor

import (
	"fmt"
	"strings"
	"testing"
)

func TestBroadcastShapes(t *testing.T) {
	cases := []struct{ a, b, want Shape }{
		{Shape{3, 7}, Shape{3, 7}, Shape{3, 7}},
		{Shape{2, 5, 7}, Shape{7}, Shape{2, 5, 7}},
		{Shape{2, 1, 5}, Shape{3, 1}, Shape{2, 3, 5}},
		{Shape{5}, Shape{2, 3, 5}, Shape{2, 3, 5}},
		{Shape{}, Shape{4}, Shape{4}},
	}
	for _, c := range cases {
		if got := BroadcastShapes("Add", c.a, c.b); !got.Equal(c.want) {
			t.Errorf("BroadcastShapes(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	wantPanic(t, "Add", func() { BroadcastShapes("Add", Shape{2, 3}, Shape{4, 3}) })
}

func TestBroadcastStrides(t *testing.T) {
	got := BroadcastStrides(Shape{3, 1, 5}, Shape{2, 3, 4, 5})
	want := []int{0, 5, 0, 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("BroadcastStrides = %v, want %v", got, want)
	}
}

func TestMatMulShape(t *testing.T) {
	out, d := MatMulShape(Shape{2, 1, 5, 7}, Shape{3, 4, 7}, false, true)
	if !out.Equal(Shape{2, 3, 5, 4}) || d.M != 5 || d.N != 4 || d.K != 7 || !d.Batch.Equal(Shape{2, 3}) {
		t.Errorf("MatMulShape = %v %+v", out, d)
	}
	out, _ = MatMulShape(Shape{7, 5}, Shape{7, 3}, true, false)
	if !out.Equal(Shape{5, 3}) {
		t.Errorf("transA: %v", out)
	}
	wantPanic(t, "MatMul", func() { MatMulShape(Shape{2, 3}, Shape{4, 5}, false, false) })
	wantPanic(t, "MatMul", func() { MatMulShape(Shape{3}, Shape{3, 5}, false, false) })
}

func TestConvShapes(t *testing.T) {
	if got := Conv2DShape(Shape{2, 3, 9, 9}, Shape{5, 3, 3, 3}, Shape{5}, 2, 1); !got.Equal(Shape{2, 5, 5, 5}) {
		t.Errorf("Conv2DShape = %v", got)
	}
	if got := ConvOutSize("Conv2D", 64, 3, 1, 1); got != 64 {
		t.Errorf("ConvOutSize = %d", got)
	}
	wantPanic(t, "Conv2D", func() { Conv2DShape(Shape{1, 3, 5, 5}, Shape{2, 4, 3, 3}, nil, 1, 1) })
	wantPanic(t, "Conv2D", func() { Conv2DShape(Shape{1, 3, 5, 5}, Shape{2, 3, 3, 3}, nil, 0, 1) })
}

func TestLayoutShapes(t *testing.T) {
	if got, ax := ConcatShape(-1, Shape{2, 3}, Shape{2, 4}); !got.Equal(Shape{2, 7}) || ax != 1 {
		t.Errorf("ConcatShape = %v %d", got, ax)
	}
	if got, ax := SliceShape(Shape{2, 7, 4}, 1, 2, 5); !got.Equal(Shape{2, 3, 4}) || ax != 1 {
		t.Errorf("SliceShape = %v %d", got, ax)
	}
	if got := PermuteShape(Shape{2, 3, 4}, []int{2, 0, 1}); !got.Equal(Shape{4, 2, 3}) {
		t.Errorf("PermuteShape = %v", got)
	}
	if got := GEGLUShape(Shape{2, 10}); !got.Equal(Shape{2, 5}) {
		t.Errorf("GEGLUShape = %v", got)
	}
	if got := AttentionShape(Shape{2, 3, 5, 8}, Shape{2, 3, 7, 8}, Shape{2, 3, 7, 4}, Shape{2, 1, 1, 7}); !got.Equal(Shape{2, 3, 5, 4}) {
		t.Errorf("AttentionShape = %v", got)
	}
	wantPanic(t, "Permute", func() { PermuteShape(Shape{2, 3}, []int{0, 0}) })
	wantPanic(t, "Slice", func() { SliceShape(Shape{2, 3}, 0, 1, 3) })
	wantPanic(t, "Concat", func() { ConcatShape(0, Shape{2, 3}, Shape{2, 4}) })
	wantPanic(t, "Embedding", func() { EmbeddingShape(Shape{4, 3}, []int32{4}) })
	wantPanic(t, "GroupNorm", func() { GroupNormShape(Shape{1, 6, 2}, 4, nil, nil) })
}

// TestNearestIndex pins PyTorch's nearest-neighbour source indices,
// including a ratio where torch's float32 scale differs from exact
// integer division.
func TestNearestIndex(t *testing.T) {
	cases := []struct{ in, out int }{{3, 6}, {5, 9}, {4, 4}, {5, 2}, {2, 82}}
	for _, c := range cases {
		var got []int
		for i := range c.out {
			got = append(got, NearestIndex(i, c.in, c.out))
		}
		for i, v := range got {
			exact := i * c.in / c.out
			if c.in == 2 && c.out == 82 && i == 41 {
				exact = 0 // float32(2)/82·41 rounds just below 1
			}
			if v != exact {
				t.Errorf("NearestIndex(%d, %d, %d) = %d, want %d", i, c.in, c.out, v, exact)
			}
		}
	}
}

func wantPanic(t *testing.T, op string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Errorf("%s: no panic", op)
			return
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, op) {
			t.Errorf("%s: panic %q does not name the op", op, msg)
		}
	}()
	f()
}
