package forest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// binaryMagic starts a compact binary model file.
const binaryMagic = "LWFOREST"

// Binary layout (little endian), after the 8-byte magic:
//
//	u32 format version
//	u32 header length, header: the JSON model header (as in the JSON file,
//	    without "forest")
//	u32 n_features, u32 n_classes, u32 trees, u32 values
//	n_features x f64 importances
//	per tree: u32 node count, then per node 12 bytes:
//	    u32 feat (bit 31 leaf, bit 30 NaN goes left, low 30 bits feature),
//	    f32 threshold (ignored for a leaf),
//	    i32 split: right child (tree-local; left is the next node, pre-order);
//	        leaf: class (>= 0) or -1-offset into values
//	values x f64 (class distributions of mixed leaves)
//	u32 CRC-32 (IEEE) of everything before it
const binaryNodeSize = 12

// SaveBinary writes m in the compact binary format (about a third of the
// JSON size). Load reads either format.
func (m *Model) SaveBinary(w io.Writer) error {
	if m.Forest == nil {
		return errors.New("forest: model has no forest")
	}
	f := m.Forest
	if err := m.check(f.nFeatures, f.nClasses); err != nil {
		return err
	}
	hdr := fileModel{Format: fileMagic, Model: *m}
	hdr.FormatVersion = FormatVersion
	hj, err := json.Marshal(&hdr)
	if err != nil {
		return fmt.Errorf("forest: writing model: %w", err)
	}
	crc := crc32.NewIEEE()
	bw := bufio.NewWriter(io.MultiWriter(w, crc))
	var b [8]byte
	u32 := func(v uint32) {
		binary.LittleEndian.PutUint32(b[:4], v)
		bw.Write(b[:4])
	}
	f64 := func(v float64) {
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(v))
		bw.Write(b[:])
	}
	bw.WriteString(binaryMagic)
	u32(FormatVersion)
	u32(uint32(len(hj)))
	bw.Write(hj)
	u32(uint32(f.nFeatures))
	u32(uint32(f.nClasses))
	u32(uint32(len(f.roots)))
	u32(uint32(len(f.values)))
	for i := range f.nFeatures {
		f64(f.importances[i])
	}
	for t, root := range f.roots {
		end := int32(len(f.nodes))
		if t+1 < len(f.roots) {
			end = f.roots[t+1]
		}
		u32(uint32(end - root))
		for _, n := range f.nodes[root:end] {
			u32(n.feat)
			if n.isLeaf() {
				u32(0)
				u32(uint32(n.leaf))
			} else {
				u32(math.Float32bits(n.thr))
				u32(uint32(n.right - root))
			}
		}
	}
	for _, v := range f.values {
		f64(v)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("forest: writing model: %w", err)
	}
	binary.LittleEndian.PutUint32(b[:4], crc.Sum32())
	if _, err := w.Write(b[:4]); err != nil {
		return fmt.Errorf("forest: writing model: %w", err)
	}
	return nil
}

// binReader reads the binary body from a byte slice with bounds checks.
type binReader struct {
	b   []byte
	err error
}

func (r *binReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("forest: %w: file ends early", ErrCorrupt)
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *binReader) u32() uint32 {
	s := r.take(4)
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(s)
}

func (r *binReader) f64() float64 {
	s := r.take(8)
	if s == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(s))
}

// loadBinary parses a whole binary model file.
func loadBinary(data []byte) (*Model, error) {
	if len(data) < len(binaryMagic)+12 {
		return nil, fmt.Errorf("forest: %w: binary file of %d bytes", ErrCorrupt, len(data))
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("forest: %w: checksum mismatch (truncated or damaged)", ErrCorrupt)
	}
	r := &binReader{b: body[len(binaryMagic):]}
	if v := r.u32(); v != FormatVersion {
		return nil, fmt.Errorf("forest: %w %d (this build reads %d)", ErrVersion, v, FormatVersion)
	}
	hj := r.take(int(r.u32()))
	if r.err != nil {
		return nil, r.err
	}
	var hdr fileModel
	if err := json.Unmarshal(hj, &hdr); err != nil {
		return nil, fmt.Errorf("forest: %w: header: %w", ErrCorrupt, err)
	}
	if hdr.Format != fileMagic || hdr.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("forest: %w: header format %q version %d", ErrCorrupt, hdr.Format, hdr.FormatVersion)
	}
	nf, nc, nt, nv := int(r.u32()), int(r.u32()), int(r.u32()), int(r.u32())
	if r.err != nil {
		return nil, r.err
	}
	if nf < 1 || nf > maxFeatures || nc < 1 || nc > maxClasses || nt < 1 {
		return nil, fmt.Errorf("forest: %w: %d features, %d classes, %d trees", ErrCorrupt, nf, nc, nt)
	}
	// Every count must fit in what is left of the file before anything is
	// allocated for it.
	if nv > len(r.b)/8 || nf > len(r.b)/8 || nt > len(r.b)/4 {
		return nil, fmt.Errorf("forest: %w: counts larger than the file", ErrCorrupt)
	}
	if err := hdr.check(nf, nc); err != nil {
		return nil, err
	}
	if err := hdr.normalizeTime(); err != nil {
		return nil, err
	}
	f := &Forest{nFeatures: nf, nClasses: nc, importances: make([]float64, nf), roots: make([]int32, 0, nt)}
	for i := range f.importances {
		v := r.f64()
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("forest: %w: importance %v", ErrCorrupt, v)
		}
		f.importances[i] = v
	}
	var stack []int32
	for t := range nt {
		n := int(r.u32())
		if r.err != nil {
			return nil, r.err
		}
		if n < 1 || n > len(r.b)/binaryNodeSize || len(f.nodes)+n > maxNodes {
			return nil, fmt.Errorf("forest: %w: tree %d has %d nodes", ErrCorrupt, t, n)
		}
		base := int32(len(f.nodes))
		f.roots = append(f.roots, base)
		raw := r.take(n * binaryNodeSize)
		// Walk in pre-order: node k must be the k-th visited, which rules
		// out cycles, shared children and unreachable nodes.
		stack = append(stack[:0], 0)
		k := int32(0)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if i != k {
				return nil, fmt.Errorf("forest: %w: tree %d: node %d is not in pre-order (expected %d)", ErrCorrupt, t, i, k)
			}
			k++
			e := raw[int(i)*binaryNodeSize:]
			ft := binary.LittleEndian.Uint32(e)
			thr := math.Float32frombits(binary.LittleEndian.Uint32(e[4:]))
			x := int32(binary.LittleEndian.Uint32(e[8:]))
			if ft&leafBit != 0 {
				if ft != leafBit {
					return nil, fmt.Errorf("forest: %w: tree %d node %d: leaf flags %#x", ErrCorrupt, t, i, ft)
				}
				if x >= int32(nc) || (x < 0 && (int(-1-x) > nv-nc)) {
					return nil, fmt.Errorf("forest: %w: tree %d node %d: leaf value %d", ErrCorrupt, t, i, x)
				}
				if x >= 0 {
					f.nodes = append(f.nodes, pureLeaf(base+i, int(x)))
				} else {
					f.nodes = append(f.nodes, mixedLeaf(base+i, int(-1-x)))
				}
				continue
			}
			if int(ft&featMask) >= nf || thr != thr || math.IsInf(float64(thr), 0) {
				return nil, fmt.Errorf("forest: %w: tree %d node %d: feature %d threshold %v", ErrCorrupt, t, i, ft&featMask, thr)
			}
			if x <= i+1 || int(x) >= n {
				return nil, fmt.Errorf("forest: %w: tree %d node %d: right child %d out of range (%d nodes)", ErrCorrupt, t, i, x, n)
			}
			f.nodes = append(f.nodes, node{feat: ft, thr: thr, right: base + x})
			stack = append(stack, x, i+1)
		}
		if int(k) != n {
			return nil, fmt.Errorf("forest: %w: tree %d: %d of %d nodes reachable", ErrCorrupt, t, k, n)
		}
	}
	f.values = make([]float64, 0, nv)
	for range nv {
		f.values = append(f.values, r.f64())
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("forest: %w: %d bytes after the forest", ErrCorrupt, len(r.b))
	}
	for _, n := range f.nodes {
		if n.isLeaf() && n.isMixed() {
			if err := checkDist(f.values[n.offset() : n.offset()+nc]); err != nil {
				return nil, fmt.Errorf("forest: %w: leaf values at %d: %w", ErrCorrupt, n.offset(), err)
			}
		}
	}
	m := hdr.Model
	m.Forest = f
	return &m, nil
}

// isBinary reports whether a file starts with the binary magic.
func isBinary(head []byte) bool { return bytes.HasPrefix(head, []byte(binaryMagic)) }
