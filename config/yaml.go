package config

// Reading the file's YAML into its shapes (rawFile). The YAML library parses
// the text into nodes, which carry their kind, tag, text and line; the
// shapes are read from those nodes here, so that an error about the
// structure names the field, in the file's terms, and its line, whatever
// the library's own messages say. Only a syntax error is worded by the
// library.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The fields of each map of the file, in the order errors list them.
var (
	topFields       = []string{"networks", "ports", "filters", "conntrack"}
	filtersFields   = []string{"accept", "deny"}
	ruleFields      = []string{"src", "dst", "proto", "sport", "dport", "zone", "mark"}
	conntrackFields = []string{"group_by", "max_series"}
)

// decoder reads the shapes of one file from its YAML nodes. Its work is
// bounded by the file's expanded size, which sizeExpanded checks before
// anything is read: each node is read at most once for each place the
// expanded file holds it, and the entries a merged map brings are listed
// once, however many maps merge it.
type decoder struct {
	// merged holds the entries of each map merged (<<) so far.
	merged map[*yaml.Node][]entry
	// expanded is the file's size in nodes, with every alias replaced by
	// a copy of its anchor, as sizeExpanded counted it.
	expanded int
	// visits counts the nodes read, for tests: never more than expanded.
	visits int
}

// decodeFile reads data, which must hold at most one YAML document, into a
// rawFile. An empty document is an empty file.
func decodeFile(data []byte) (*rawFile, error) {
	return (&decoder{}).file(data)
}

// file reads data, which must hold at most one YAML document, into a
// rawFile.
func (d *decoder) file(data []byte) (*rawFile, error) {
	yd := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := yd.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return &rawFile{}, nil // nothing, or comments only
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s", errYAML, libraryMessage(strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	// The decoder reads one document at a time: a second would be ignored.
	var next yaml.Node
	if err := yd.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: the file must hold one (remove the second ---)", errDocuments)
	}
	if d.expanded, err = sizeExpanded(&doc, MaxConfigNodes); err != nil {
		return nil, err
	}
	d.merged = make(map[*yaml.Node][]entry)
	raw := &rawFile{}
	if len(doc.Content) == 0 {
		return raw, nil
	}
	root := d.resolve(doc.Content[0])
	if isNull(root) {
		return raw, nil
	}
	err = d.readMap(root, "the top level", topFields, func(field string, v *yaml.Node) error {
		switch field {
		case "networks":
			return d.readNetworks(v, raw)
		case "ports":
			raw.Ports = d.readList(v)
		case "filters":
			raw.Filters = &rawFilters{}
			return d.readMap(v, "filters", filtersFields, func(field string, v *yaml.Node) error {
				rules := &raw.Filters.Accept
				if field == "deny" {
					rules = &raw.Filters.Deny
				}
				return d.readRules(v, "filters."+field, rules)
			})
		case "conntrack":
			raw.Conntrack = &rawConntrack{}
			return d.readMap(v, "conntrack", conntrackFields, func(field string, v *yaml.Node) error {
				switch field {
				case "group_by":
					raw.Conntrack.GroupBy = d.readList(v)
				case "max_series":
					raw.Conntrack.MaxSeries = readScalar(v)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return raw, nil
}

// readNetworks reads the networks map: names to lists of CIDRs. A name
// with no value is an empty list, which Parse refuses.
func (d *decoder) readNetworks(n *yaml.Node, raw *rawFile) error {
	if n.Kind != yaml.MappingNode {
		return structuref(n, "networks must be a map of names to lists of CIDRs, not %s", shape(n))
	}
	es, err := d.entries(n, func(name string) string { return "networks." + pathName(name) + " is given twice" })
	if err != nil {
		return err
	}
	raw.Networks = make(map[string]strList, len(es))
	for _, e := range es {
		var l strList
		if !isNull(e.value) {
			l = d.readList(e.value)
		}
		raw.Networks[e.key.Value] = l
	}
	return nil
}

// readRules reads a list of filter rules, at path, into rules.
func (d *decoder) readRules(n *yaml.Node, path string, rules *[]rawRule) error {
	if n.Kind != yaml.SequenceNode {
		return structuref(n, "%s must be a list of rules, not %s", path, shape(n))
	}
	*rules = make([]rawRule, len(n.Content))
	for i, item := range n.Content {
		item = d.resolve(item)
		if isNull(item) {
			continue // an empty rule, which Parse refuses
		}
		r := &(*rules)[i]
		err := d.readMap(item, fmt.Sprintf("%s[%d]", path, i), ruleFields, func(field string, v *yaml.Node) error {
			l := d.readList(v)
			switch field {
			case "src":
				r.Src = l
			case "dst":
				r.Dst = l
			case "proto":
				r.Proto = l
			case "sport":
				r.SPort = l
			case "dport":
				r.DPort = l
			case "zone":
				r.Zone = l
			case "mark":
				r.Mark = l
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readMap reads the map n, called name in errors, whose only fields are
// fields: read is called for each field given a value; a field given no
// value (null) is absent.
func (d *decoder) readMap(n *yaml.Node, name string, fields []string, read func(field string, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return structuref(n, "%s must be a map, not %s", name, shape(n))
	}
	es, err := d.entries(n, func(field string) string {
		return fmt.Sprintf("field %s is given twice in %s", quote(field), name)
	})
	if err != nil {
		return err
	}
	for _, e := range es {
		if !slices.Contains(fields, e.key.Value) {
			return structuref(e.key, "unknown field %s in %s; valid fields are %s", quote(e.key.Value), name, strings.Join(fields, ", "))
		}
		if isNull(e.value) {
			continue
		}
		if err := read(e.key.Value, e.value); err != nil {
			return err
		}
	}
	return nil
}

// entry is a key and its value in a YAML map.
type entry struct {
	key, value *yaml.Node
}

// entries returns the entries of the map n in their order, then those its
// merge keys (<<) bring that it does not give itself, the first map merged
// winning, as YAML says. A key given twice is an error that twice words.
// The entries of a merged map are listed once and kept: a map merged by
// many others, directly or through their own merges, is not expanded
// again for each.
func (d *decoder) entries(n *yaml.Node, twice func(key string) string) ([]entry, error) {
	var own, merged []entry
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i]), d.resolve(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			maps := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				maps = v.Content
			}
			for _, m := range maps {
				m = d.resolve(m)
				if m.Kind != yaml.MappingNode {
					return nil, structuref(k, "a merge (<<) takes a map or a list of maps, not %s", shape(m))
				}
				es, ok := d.merged[m]
				if !ok {
					var err error
					if es, err = d.entries(m, twice); err != nil {
						return nil, err
					}
					d.merged[m] = es
				}
				merged = append(merged, es...)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			return nil, structuref(k, "a key must be a name, not %s", shape(k))
		}
		if seen[k.Value] {
			return nil, structuref(k, "%s", twice(k.Value))
		}
		seen[k.Value] = true
		own = append(own, entry{k, v})
	}
	for _, e := range merged {
		if !seen[e.key.Value] {
			seen[e.key.Value] = true
			own = append(own, e)
		}
	}
	return own, nil
}

// readList reads a list of scalars, each as its text (a null as ""); a
// value of another shape is described in bad.
func (d *decoder) readList(n *yaml.Node) strList {
	l := strList{given: true}
	if n.Kind != yaml.SequenceNode {
		l.bad = shape(n)
		return l
	}
	for _, item := range n.Content {
		item = d.resolve(item)
		switch {
		case item.Kind != yaml.ScalarNode:
			return strList{given: true, bad: shape(n)}
		case isNull(item):
			l.items = append(l.items, "")
		default:
			l.items = append(l.items, item.Value)
		}
	}
	return l
}

// readScalar reads a scalar as its text; a value of another shape is
// described in bad.
func readScalar(n *yaml.Node) scalar {
	if n.Kind != yaml.ScalarNode {
		return scalar{given: true, bad: shape(n)}
	}
	return scalar{given: true, text: n.Value}
}

// resolve follows an alias to the node it names, counting a node read.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	d.visits++
	return target(n)
}

// target follows an alias to the node it names.
func target(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is a null: nothing, ~ or null.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// shape names what n holds, for errors: a list, a map, or its text.
func shape(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if k := target(item).Kind; k == yaml.SequenceNode || k == yaml.MappingNode {
				return "a list holding lists or maps"
			}
		}
		return "a list"
	case yaml.MappingNode:
		return "a map"
	}
	return quote(n.Value)
}

// structuref returns an error about the structure of the YAML at n, with
// its line.
func structuref(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("line %d: %w: "+format, append([]any{n.Line, errStructure}, args...)...)
}
