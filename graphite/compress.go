package graphite

import (
	"bytes"
	"compress/flate"
	"io"
)

// compressor compresses the chunks of the resend window and restores them.
// Lines of a window are written again only after a failure, so they are kept
// compressed: plaintext lines shrink about nine times at flate's best speed,
// for a few milliseconds of CPU time per megabyte (BENCHMARKS.md). It is not
// safe for concurrent use.
type compressor struct {
	buf bytes.Buffer
	w   *flate.Writer
	r   io.ReadCloser
}

// compress replaces the lines of the raw chunk c by their compressed form,
// in memory of its own outside the Go heap (see allocChunk), and gives the
// memory of the lines back to pool. It returns how much memory that saved.
func (z *compressor) compress(c *chunk, pool *chunkPool) (saved int) {
	z.buf.Reset()
	if z.w == nil {
		z.w, _ = flate.NewWriter(&z.buf, flate.BestSpeed)
	} else {
		z.w.Reset(&z.buf)
	}
	data := c.data()
	if _, err := z.w.Write(data); err != nil || z.w.Close() != nil || z.buf.Len() >= len(data) {
		return 0 // writes to a bytes.Buffer do not fail; keep c as it is otherwise
	}
	raw := chunk{mem: c.mem, lines: c.lines}
	c.z = allocChunk(z.buf.Len())[:z.buf.Len()]
	copy(c.z, z.buf.Bytes())
	c.raw, c.mem, c.off = len(data), nil, 0
	pool.put(&raw)
	return len(data) - len(c.z)
}

// restore gives the compressed chunk c its lines back, in memory from pool,
// and returns how much more memory it takes.
func (z *compressor) restore(c *chunk, pool *chunkPool) (grown int) {
	m := pool.get(c.raw).mem[:c.raw]
	if z.r == nil {
		z.r = flate.NewReader(bytes.NewReader(c.z))
	} else {
		_ = z.r.(flate.Resetter).Reset(bytes.NewReader(c.z), nil)
	}
	// The data was compressed here: reading it back cannot fail.
	_, _ = io.ReadFull(z.r, m)
	grown = c.raw - len(c.z)
	freeChunk(c.z)
	c.mem, c.off, c.z, c.raw = m, 0, nil, 0
	return grown
}
