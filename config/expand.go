package config

// The size of the file with its aliases expanded. An alias stands for a
// copy of the node its anchor names, so a small file can stand for a huge
// one: ten aliases of a list of ten thousand networks are a hundred
// thousand networks. The reading works on what the file stands for, so it
// is bounded before it starts, by counting the nodes of the expanded file
// in one walk of the file as it is written: the size of each anchored node
// is kept when its walk ends, and an alias adds that size without walking
// it again.

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// sizer counts the nodes of a document with its aliases expanded.
type sizer struct {
	limit int
	// total counts the nodes walked so far, each alias counted as the
	// size of the node it names.
	total int
	// size holds the expanded size of each anchored node walked.
	size map[*yaml.Node]int
	// open holds the anchored nodes being walked: an alias to one of them
	// is inside it.
	open map[*yaml.Node]bool
}

// sizeExpanded returns the number of nodes of doc once every alias is
// replaced by a copy of the node it names; past limit it stops and returns
// an error naming the alias that crossed it, its line and its anchor. An
// alias inside the node it names is an error too. Its time is linear in
// the nodes of doc as written, whatever they expand to.
func sizeExpanded(doc *yaml.Node, limit int) (int, error) {
	s := &sizer{limit: limit, size: make(map[*yaml.Node]int), open: make(map[*yaml.Node]bool)}
	if err := s.walk(doc); err != nil {
		return 0, err
	}
	return s.total, nil
}

func (s *sizer) walk(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return s.alias(n)
	}
	start := s.total
	s.total++
	if s.total > s.limit {
		// Only data larger than the file size cap holds this many.
		return fmt.Errorf("line %d: the node here %w of %d nodes", n.Line, errExpansion, s.limit)
	}
	if n.Anchor != "" {
		s.open[n] = true
	}
	for _, c := range n.Content {
		if err := s.walk(c); err != nil {
			return err
		}
	}
	if n.Anchor != "" {
		delete(s.open, n)
		s.size[n] = s.total - start
	}
	return nil
}

// alias adds the size of the node the alias n names.
func (s *sizer) alias(n *yaml.Node) error {
	t := n.Alias
	name := pathName(n.Value)
	if s.open[t] {
		return fmt.Errorf("line %d: alias *%s %w &%s (line %d)", n.Line, name, errAliasCycle, name, t.Line)
	}
	size, ok := s.size[t]
	if !ok {
		// The YAML parser names only nodes already parsed, walked before
		// the alias; any other is walked here, as the alias's copy.
		return s.walk(t)
	}
	s.total += size
	if s.total > s.limit {
		return fmt.Errorf("line %d: alias *%s %w of %d nodes (its anchor &%s, line %d, holds %d nodes, copied for each alias)",
			n.Line, name, errExpansion, s.limit, name, t.Line, size)
	}
	return nil
}
