package tree

import "iter"

// Table holds the counter and gauge samples of many series of one shape,
// compactly: a row per series, a column per sample of a series, a value per
// cell. It stands for the samples it holds, and readers see them as such
// (Snapshot.All): the sample of row r and column c has
//   - the Desc of the column,
//   - the label values Fixed of the column followed by those of the row's
//     Labels (the column's Desc names them: its labels are the names of
//     Fixed followed by Names),
//   - the Graphite path Prefix, then the row's Path, then the Desc's Leaf
//     (none when the row's Path is nil or the column is NoGraphite),
//   - the value Values[r*len(Columns)+c].
//
// A sample costs its value: 8 bytes, where a Sample takes 80 and holds
// pointers the garbage collector scans. A collector that keeps its rows from
// one snapshot to the next, and makes a new Rows slice only when its series
// change, reads a series into the tree for the cost of its values. A Table
// must not be changed once added to a Builder; its Columns, Names, Prefix
// and Rows may be shared by the tables of other snapshots.
type Table struct {
	// Columns describe the samples of every row, in order.
	Columns []Column
	// Names are the label names of the values the rows' Labels hold.
	Names []string
	// Prefix starts the Graphite path of every sample.
	Prefix []string
	// Rows hold what the samples of one series share.
	Rows []Row
	// Values holds the values of the samples, row by row.
	Values []float64
}

// Column describes one sample of every row of a Table.
type Column struct {
	// Desc is the metric family of the samples: a counter or a gauge.
	Desc *Desc
	// Fixed are the first label values of every sample of the column.
	Fixed []string
	// NoGraphite keeps the samples of the column out of Graphite.
	NoGraphite bool
}

// Row is what the samples of one series of a Table share.
type Row struct {
	// Labels holds the label values of the series, named by the Table's
	// Names; nil when there are no Names.
	Labels *Labels
	// Path follows the Table's Prefix in the Graphite path of the
	// series' samples; nil keeps them out of Graphite.
	Path []string
}

// Len returns the number of samples the table holds.
func (t *Table) Len() int {
	return len(t.Rows) * len(t.Columns)
}

// cursor turns the cells of tables into Samples, reusing its memory.
type cursor struct {
	s      Sample
	labels []string
	path   []string
}

// each calls yield with every sample of t, row by row, until yield returns
// false; it reports whether it got to the end. The Sample and the slices
// it holds are c's, valid until the next call of yield.
func (t *Table) each(c *cursor, yield func(*Sample) bool) bool {
	nc := len(t.Columns)
	for r := range t.Rows {
		row := &t.Rows[r]
		var vals []string
		if row.Labels != nil {
			vals = row.Labels.values
		}
		path := row.Path
		if path != nil && len(t.Prefix) > 0 {
			c.path = append(append(c.path[:0], t.Prefix...), path...)
			path = c.path
		}
		for i := range t.Columns {
			col := &t.Columns[i]
			c.s = Sample{Desc: col.Desc, Path: path, Value: t.Values[r*nc+i]}
			if col.NoGraphite {
				c.s.Path = nil
			}
			if len(col.Fixed) == 0 {
				c.s.LabelValues, c.s.Labels = vals, row.Labels
			} else {
				c.labels = append(append(c.labels[:0], col.Fixed...), vals...)
				c.s.LabelValues = c.labels
			}
			if !yield(&c.s) {
				return false
			}
		}
	}
	return true
}

// All returns the samples of the snapshot: those of Samples, in order, then
// those of every Table, in order, row by row. A sample of a Table, and the
// slices it holds, are valid only until the next: copy what you keep
// (Sample.Clone).
func (s *Snapshot) All() iter.Seq[*Sample] {
	return func(yield func(*Sample) bool) {
		for i := range s.Samples {
			if !yield(&s.Samples[i]) {
				return
			}
		}
		var c cursor
		for _, t := range s.Tables {
			if !t.each(&c, yield) {
				return
			}
		}
	}
}

// Len returns the number of samples of the snapshot, those of its tables
// included.
func (s *Snapshot) Len() int {
	n := len(s.Samples)
	for _, t := range s.Tables {
		n += t.Len()
	}
	return n
}

// Clone returns a copy of s that shares nothing a reader may reuse: its
// label values and path are copied.
func (s *Sample) Clone() Sample {
	c := *s
	if s.LabelValues != nil {
		c.LabelValues = append([]string(nil), s.LabelValues...)
	}
	if s.Path != nil {
		c.Path = append([]string{}, s.Path...)
	}
	return c
}
