package forest

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// FormatVersion is the model file version this package writes and reads.
const FormatVersion = 1

// fileMagic is the value of the "format" key of every model file.
const fileMagic = "loadwatch-model"

// Kinds of model.
const (
	KindLoadwatch = "loadwatch"      // trained by loadwatch
	KindSklearn   = "sklearn-import" // exported from scikit-learn by tools/sklearn
)

// Limits a model file must stay within.
const (
	maxClasses = 1 << 16
	maxNodes   = 1 << 30
)

// Errors Load wraps; check with errors.Is.
var (
	ErrFormat  = errors.New("not a loadwatch model file")
	ErrVersion = errors.New("unsupported model format version")
	ErrCorrupt = errors.New("corrupt model file")
)

// Model is a forest together with what it needs to be used and trusted:
// the features it expects (in order), the class names, where it came from
// and how well it did.
type Model struct {
	FormatVersion int             `json:"format_version"`
	Kind          string          `json:"kind"`        // KindLoadwatch or KindSklearn
	Legacy        bool            `json:"legacy"`      // features are the raw [P, E] of the original service
	FeatureSet    string          `json:"feature_set"` // name and version of the feature extractor
	Features      []string        `json:"features"`
	Classes       []string        `json:"classes"`
	DataHash      string          `json:"data_hash"` // e.g. HashDataset of the training set
	TrainedAt     time.Time       `json:"trained_at"`
	Config        Config          `json:"config"`
	Report        json.RawMessage `json:"report,omitempty"`
	Forest        *Forest         `json:"-"`
}

type fileModel struct {
	Format string `json:"format"`
	Model
	Forest *forestJSON `json:"forest"`
}

type forestJSON struct {
	NFeatures   int        `json:"n_features"`
	NClasses    int        `json:"n_classes"`
	Importances []float64  `json:"importances,omitempty"`
	Trees       []treeJSON `json:"trees"`
}

// treeJSON is one tree as parallel arrays indexed by node (root = 0).
// A leaf has feature -1 and left = right = -1; its class distribution is
// the next n_classes numbers of value (leaves in node order).
type treeJSON struct {
	Feature     []int32   `json:"feature"`
	Threshold   []float32 `json:"threshold"`
	Left        []int32   `json:"left"`
	Right       []int32   `json:"right"`
	MissingLeft []int8    `json:"missing_left"`
	Value       []float64 `json:"value"`
}

// Save writes m as indented-free JSON. The bytes depend only on the model's
// content, so the same training gives the same file.
func (m *Model) Save(w io.Writer) error {
	if m.Forest == nil {
		return errors.New("forest: model has no forest")
	}
	if err := m.check(m.Forest.nFeatures, m.Forest.nClasses); err != nil {
		return err
	}
	fm := fileModel{Format: fileMagic, Model: *m, Forest: m.Forest.toJSON()}
	fm.FormatVersion = FormatVersion
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(&fm); err != nil {
		return fmt.Errorf("forest: writing model: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("forest: writing model: %w", err)
	}
	return nil
}

// Load reads a model written by Save, SaveBinary or
// tools/sklearn/export_sklearn.py
// and checks it fully: a file that is truncated, corrupt, of another
// version, or whose trees do not fit its features and classes is refused
// with an error wrapping ErrFormat, ErrVersion or ErrCorrupt.
func Load(r io.Reader) (*Model, error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(len(binaryMagic)); isBinary(head) {
		data, err := io.ReadAll(br)
		if err != nil {
			return nil, fmt.Errorf("forest: reading model: %w", err)
		}
		return loadBinary(data)
	}
	dec := json.NewDecoder(br)
	var fm fileModel
	if err := dec.Decode(&fm); err != nil {
		return nil, fmt.Errorf("forest: reading model: %w: %w", ErrCorrupt, err)
	}
	if fm.Format != fileMagic {
		return nil, fmt.Errorf("forest: %w (format %q, want %q)", ErrFormat, fm.Format, fileMagic)
	}
	if fm.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("forest: %w %d (this build reads %d)", ErrVersion, fm.FormatVersion, FormatVersion)
	}
	if fm.Forest == nil {
		return nil, fmt.Errorf("forest: %w: no forest", ErrCorrupt)
	}
	if err := fm.check(fm.Forest.NFeatures, fm.Forest.NClasses); err != nil {
		return nil, err
	}
	if err := fm.normalizeTime(); err != nil {
		return nil, err
	}
	f, err := fm.Forest.build()
	if err != nil {
		return nil, err
	}
	m := fm.Model
	m.Forest = f
	return &m, nil
}

// check validates the model's own fields against the forest's shape.
func (m *Model) check(nf, nc int) error {
	switch m.Kind {
	case KindLoadwatch, KindSklearn:
	default:
		return fmt.Errorf("forest: %w: unknown kind %q", ErrCorrupt, m.Kind)
	}
	if len(m.Features) != nf {
		return fmt.Errorf("forest: %w: %d feature names for a forest of %d features", ErrCorrupt, len(m.Features), nf)
	}
	if len(m.Classes) != nc {
		return fmt.Errorf("forest: %w: %d class names for a forest of %d classes", ErrCorrupt, len(m.Classes), nc)
	}
	if err := unique("class", m.Classes); err != nil {
		return err
	}
	return unique("feature", m.Features)
}

// normalizeTime moves the training time to UTC and refuses one that a
// model file cannot hold: RFC 3339 parsing accepts offsets (+24:00) and
// years (0000 at a positive offset is year -1 in UTC) that writing refuses,
// and a model that loads must save again.
func (m *Model) normalizeTime() error {
	t := m.TrainedAt.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return fmt.Errorf("forest: %w: trained_at %v out of range", ErrCorrupt, m.TrainedAt)
	}
	m.TrainedAt = t
	return nil
}

func unique(what string, names []string) error {
	seen := make(map[string]bool, len(names))
	for _, s := range names {
		if s == "" {
			return fmt.Errorf("forest: %w: empty %s name", ErrCorrupt, what)
		}
		if seen[s] {
			return fmt.Errorf("forest: %w: %s %q appears twice", ErrCorrupt, what, s)
		}
		seen[s] = true
	}
	return nil
}

func (f *Forest) toJSON() *forestJSON {
	fj := &forestJSON{NFeatures: f.nFeatures, NClasses: f.nClasses, Importances: f.importances}
	nc := f.nClasses
	for t, root := range f.roots {
		end := int32(len(f.nodes))
		if t+1 < len(f.roots) {
			end = f.roots[t+1]
		}
		nodes := f.nodes[root:end]
		tj := treeJSON{
			Feature:     make([]int32, len(nodes)),
			Threshold:   make([]float32, len(nodes)),
			Left:        make([]int32, len(nodes)),
			Right:       make([]int32, len(nodes)),
			MissingLeft: make([]int8, len(nodes)),
		}
		for i, n := range nodes {
			switch {
			case n.isLeaf() && !n.isMixed():
				tj.Feature[i], tj.Left[i], tj.Right[i] = -1, -1, -1
				for c := range nc {
					v := 0.0
					if c == int(n.leaf) {
						v = 1
					}
					tj.Value = append(tj.Value, v)
				}
			case n.isLeaf():
				tj.Feature[i], tj.Left[i], tj.Right[i] = -1, -1, -1
				tj.Value = append(tj.Value, f.values[n.offset():n.offset()+nc]...)
			default:
				tj.Feature[i] = int32(n.feature())
				if n.nanLeft() {
					tj.MissingLeft[i] = 1
				}
				tj.Threshold[i] = n.thr
				tj.Left[i] = int32(i + 1)
				tj.Right[i] = n.right - root
			}
		}
		fj.Trees = append(fj.Trees, tj)
	}
	return fj
}

// build checks a decoded forest and flattens it, renumbering each tree in
// pre-order (scikit-learn's depth-first trees already are).
func (fj *forestJSON) build() (*Forest, error) {
	nf, nc := fj.NFeatures, fj.NClasses
	if nf < 1 || nf > maxFeatures {
		return nil, fmt.Errorf("forest: %w: %d features", ErrCorrupt, nf)
	}
	if nc < 1 || nc > maxClasses {
		return nil, fmt.Errorf("forest: %w: %d classes", ErrCorrupt, nc)
	}
	if len(fj.Trees) == 0 {
		return nil, fmt.Errorf("forest: %w: no trees", ErrCorrupt)
	}
	if fj.Importances != nil && len(fj.Importances) != nf {
		return nil, fmt.Errorf("forest: %w: %d importances for %d features", ErrCorrupt, len(fj.Importances), nf)
	}
	for _, v := range fj.Importances {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("forest: %w: importance %v", ErrCorrupt, v)
		}
	}
	total := 0
	for t, tj := range fj.Trees {
		n := len(tj.Feature)
		if n == 0 || len(tj.Threshold) != n || len(tj.Left) != n || len(tj.Right) != n || len(tj.MissingLeft) != n {
			return nil, fmt.Errorf("forest: %w: tree %d: node arrays of lengths %d/%d/%d/%d/%d",
				ErrCorrupt, t, n, len(tj.Threshold), len(tj.Left), len(tj.Right), len(tj.MissingLeft))
		}
		total += n
		if total > maxNodes {
			return nil, fmt.Errorf("forest: %w: more than %d nodes", ErrCorrupt, maxNodes)
		}
	}
	f := &Forest{nFeatures: nf, nClasses: nc, nodes: make([]node, 0, total), roots: make([]int32, 0, len(fj.Trees))}
	f.importances = make([]float64, nf)
	copy(f.importances, fj.Importances)
	var parents []uint8
	var leafNo, newIdx, order, stack []int32
	for t, tj := range fj.Trees {
		n := len(tj.Feature)
		parents = append(parents[:0], make([]uint8, n)...)
		leafNo = append(leafNo[:0], make([]int32, n)...)
		leaves := 0
		for i := range n {
			ft, l, r := tj.Feature[i], tj.Left[i], tj.Right[i]
			if ft == -1 {
				if l != -1 || r != -1 {
					return nil, fmt.Errorf("forest: %w: tree %d node %d: leaf with children %d, %d", ErrCorrupt, t, i, l, r)
				}
				leafNo[i] = int32(leaves)
				leaves++
				continue
			}
			if ft < 0 || int(ft) >= nf {
				return nil, fmt.Errorf("forest: %w: tree %d node %d: feature %d of %d", ErrCorrupt, t, i, ft, nf)
			}
			// Children come after their parent (so there is no cycle) and
			// every node but the root has exactly one parent.
			if l <= int32(i) || int(l) >= n || r <= int32(i) || int(r) >= n || l == r {
				return nil, fmt.Errorf("forest: %w: tree %d node %d: children %d, %d out of range (%d nodes)", ErrCorrupt, t, i, l, r, n)
			}
			parents[l]++
			parents[r]++
			if parents[l] > 1 || parents[r] > 1 {
				return nil, fmt.Errorf("forest: %w: tree %d node %d: a child has two parents", ErrCorrupt, t, i)
			}
			if thr := tj.Threshold[i]; thr != thr {
				return nil, fmt.Errorf("forest: %w: tree %d node %d: NaN threshold", ErrCorrupt, t, i)
			}
			if m := tj.MissingLeft[i]; m != 0 && m != 1 {
				return nil, fmt.Errorf("forest: %w: tree %d node %d: missing_left %d", ErrCorrupt, t, i, m)
			}
		}
		for i := 1; i < n; i++ {
			if parents[i] != 1 {
				return nil, fmt.Errorf("forest: %w: tree %d node %d: unreachable", ErrCorrupt, t, i)
			}
		}
		if leaves*nc != len(tj.Value) {
			return nil, fmt.Errorf("forest: %w: tree %d: %d leaf values for %d leaves of %d classes", ErrCorrupt, t, len(tj.Value), leaves, nc)
		}
		// Pre-order: a node, its left subtree, its right subtree.
		order, stack = order[:0], append(stack[:0], 0)
		newIdx = append(newIdx[:0], make([]int32, n)...)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			newIdx[i] = int32(len(order))
			order = append(order, i)
			if tj.Feature[i] != -1 {
				stack = append(stack, tj.Right[i], tj.Left[i])
			}
		}
		base := int32(len(f.nodes))
		f.roots = append(f.roots, base)
		for k, i := range order {
			if tj.Feature[i] == -1 {
				v := tj.Value[int(leafNo[i])*nc : int(leafNo[i]+1)*nc]
				nd, err := f.loadLeaf(base+int32(k), v)
				if err != nil {
					return nil, fmt.Errorf("forest: %w: tree %d node %d: %w", ErrCorrupt, t, i, err)
				}
				f.nodes = append(f.nodes, nd)
				continue
			}
			f.nodes = append(f.nodes, splitNode(int(tj.Feature[i]), tj.MissingLeft[i] == 1, tj.Threshold[i], base+newIdx[tj.Right[i]]))
		}
	}
	return f, nil
}

// checkDist checks a leaf's class distribution.
func checkDist(v []float64) error {
	s := 0.0
	for _, p := range v {
		if math.IsNaN(p) || math.IsInf(p, 0) || p < 0 || p > 1 {
			return fmt.Errorf("class probability %v", p)
		}
		s += p
	}
	if s <= 0 || math.Abs(s-1) > 1e-6 {
		return fmt.Errorf("class probabilities sum to %v", s)
	}
	return nil
}

// loadLeaf encodes leaf self's distribution: one-hot becomes a pure leaf.
func (f *Forest) loadLeaf(self int32, v []float64) (node, error) {
	if err := checkDist(v); err != nil {
		return node{}, err
	}
	only, nonzero := 0, 0
	for c, p := range v {
		if p != 0 {
			only = c
			nonzero++
		}
	}
	if nonzero == 1 && v[only] == 1 {
		return pureLeaf(self, only), nil
	}
	off := len(f.values)
	if off+len(v) > math.MaxInt32 {
		return node{}, errors.New("too many leaf values")
	}
	f.values = append(f.values, v...)
	return mixedLeaf(self, off), nil
}

// HashDataset returns a SHA-256 over the dataset's shape, names, values and
// labels, as "sha256:<hex>", for Model.DataHash.
func HashDataset(d Dataset) string {
	h := sha256.New()
	var b [8]byte
	word := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	str := func(s string) {
		word(uint64(len(s)))
		io.WriteString(h, s)
	}
	word(uint64(d.NFeatures))
	word(uint64(len(d.Features)))
	for _, s := range d.Features {
		str(s)
	}
	word(uint64(len(d.Classes)))
	for _, s := range d.Classes {
		str(s)
	}
	word(uint64(len(d.Y)))
	for _, v := range d.X {
		binary.LittleEndian.PutUint32(b[:4], math.Float32bits(v))
		h.Write(b[:4])
	}
	for _, y := range d.Y {
		binary.LittleEndian.PutUint32(b[:4], uint32(y))
		h.Write(b[:4])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
