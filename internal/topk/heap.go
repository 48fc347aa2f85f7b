package topk

import "slices"

// rowHeap is a min-heap of rows by rank: the root is the smallest kept.
type rowHeap[K comparable] []Row[K]

// below reports whether a ranks below b: fewer bytes at the upper bound,
// then fewer counted.
func below[K comparable](a, b *Row[K]) bool {
	if ab, bb := a.Bytes(), b.Bytes(); ab != bb {
		return ab < bb
	}
	return a.Error > b.Error
}

// offer keeps r if it ranks among the n largest seen.
func (h rowHeap[K]) offer(r Row[K], n int) rowHeap[K] {
	if len(h) < n {
		h = append(h, r)
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if !below(&h[i], &h[p]) {
				break
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
		return h
	}
	if !below(&h[0], &r) {
		return h
	}
	h[0] = r
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h) && below(&h[l], &h[m]) {
			m = l
		}
		if l+1 < len(h) && below(&h[l+1], &h[m]) {
			m = l + 1
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	return h
}

// sorted returns the rows largest first.
func (h rowHeap[K]) sorted() []Row[K] {
	slices.SortFunc(h, func(a, b Row[K]) int {
		switch {
		case below(&b, &a):
			return -1
		case below(&a, &b):
			return 1
		}
		return 0
	})
	return h
}
