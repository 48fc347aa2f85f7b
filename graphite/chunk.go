package graphite

import (
	"bytes"
	"time"
)

// chunkSize is the capacity of a chunk of lines. A line longer than that gets
// a chunk of its own, sized to fit.
const chunkSize = 256 << 10

// maxFreeChunks is how many released chunks are kept for reuse; the others
// are given back to the system at once.
const maxFreeChunks = 8

// chunk holds whole plaintext lines, back to back, each ending with '\n'.
// Lines are only ever appended at the end and removed from the front, so the
// lines of a chunk are always data()[0:len] and a chunk never holds part of
// a line.
type chunk struct {
	mem   []byte // the memory of the chunk; mem[:cap(mem)] is usable
	off   int    // bytes before off were removed from the front
	lines int    // lines in data()

	// z holds the lines compressed, in the resend window, with mem nil;
	// raw is then their size.
	z   []byte
	raw int

	// sealed is set once the sender has begun writing the chunk or the
	// chunk has been queued for a resend: no line is appended to it then.
	sealed bool
	// resend is set on the chunks of the resend window queued again after
	// a failed connection: their lines were acknowledged once already.
	resend bool
	// at is when the newest line of a chunk in the resend window was
	// acknowledged.
	at time.Time
}

// data returns the lines of c.
func (c *chunk) data() []byte { return c.mem[c.off:] }

// size returns the bytes of the lines of c.
func (c *chunk) size() int {
	if c.z != nil {
		return c.raw
	}
	return len(c.mem) - c.off
}

// stored returns the memory the lines of c take: compressed or not.
func (c *chunk) stored() int {
	if c.z != nil {
		return len(c.z)
	}
	return c.size()
}

// room returns how many bytes can still be appended to c.
func (c *chunk) room() int { return cap(c.mem) - len(c.mem) }

// add appends n whole lines to c. The caller checks that they fit: c.mem is
// never reallocated.
func (c *chunk) add(lines []byte, n int) {
	c.mem = append(c.mem, lines...)
	c.lines += n
}

// dropLines removes lines from the front of c until at least n lines and at
// least size bytes are gone, or c is empty, and returns what it removed.
func (c *chunk) dropLines(n, size int) (lines, removed int) {
	d := c.data()
	for lines < c.lines && (lines < n || removed < size) {
		removed += bytes.IndexByte(d[removed:], '\n') + 1
		lines++
	}
	c.off += removed
	c.lines -= lines
	return lines, removed
}

// chunkPool hands out chunks and takes them back. It keeps a few released
// chunks for reuse. It is not safe for concurrent use.
type chunkPool struct {
	free []*chunk
}

// get returns an empty chunk that can hold at least n bytes.
func (p *chunkPool) get(n int) *chunk {
	if n <= chunkSize {
		if k := len(p.free); k > 0 {
			c := p.free[k-1]
			p.free[k-1] = nil
			p.free = p.free[:k-1]
			return c
		}
		return &chunk{mem: allocChunk(chunkSize)}
	}
	return &chunk{mem: make([]byte, 0, n)}
}

// put takes back c, which nobody may use any more.
func (p *chunkPool) put(c *chunk) {
	if c.z != nil {
		freeChunk(c.z)
		c.z = nil
		return
	}
	if cap(c.mem) != chunkSize {
		return // an oversized chunk, from the Go heap
	}
	if len(p.free) < maxFreeChunks {
		*c = chunk{mem: c.mem[:0]}
		p.free = append(p.free, c)
		return
	}
	freeChunk(c.mem)
	c.mem = nil
}

// release gives every chunk kept for reuse back to the system.
func (p *chunkPool) release() {
	for i, c := range p.free {
		freeChunk(c.mem)
		p.free[i] = nil
	}
	p.free = p.free[:0]
}

// chunkList is a queue of chunks, oldest first.
type chunkList struct {
	s    []*chunk
	head int
}

func (l *chunkList) len() int { return len(l.s) - l.head }

// at returns the i-th chunk from the front.
func (l *chunkList) at(i int) *chunk { return l.s[l.head+i] }

// front returns the oldest chunk, or nil.
func (l *chunkList) front() *chunk {
	if l.len() == 0 {
		return nil
	}
	return l.s[l.head]
}

// back returns the newest chunk, or nil.
func (l *chunkList) back() *chunk {
	if l.len() == 0 {
		return nil
	}
	return l.s[len(l.s)-1]
}

func (l *chunkList) pushBack(c *chunk) { l.s = append(l.s, c) }

// popFront removes and returns the oldest chunk.
func (l *chunkList) popFront() *chunk {
	c := l.s[l.head]
	l.s[l.head] = nil
	l.head++
	if l.head == len(l.s) {
		l.s, l.head = l.s[:0], 0
	} else if l.head >= 64 && 2*l.head >= len(l.s) {
		n := copy(l.s, l.s[l.head:])
		clear(l.s[n:])
		l.s, l.head = l.s[:n], 0
	}
	return c
}

// remove removes the i-th chunk from the front.
func (l *chunkList) remove(i int) {
	j := l.head + i
	copy(l.s[j:], l.s[j+1:])
	l.s[len(l.s)-1] = nil
	l.s = l.s[:len(l.s)-1]
}

// prepend puts the chunks of o, in their order, before those of l, and
// empties o.
func (l *chunkList) prepend(o *chunkList) {
	if o.len() == 0 {
		return
	}
	s := make([]*chunk, 0, o.len()+l.len())
	s = append(s, o.s[o.head:]...)
	s = append(s, l.s[l.head:]...)
	l.s, l.head = s, 0
	*o = chunkList{}
}
