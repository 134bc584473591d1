//! Streaming, parallel, memory-bounded root hash.

use std::{fs::File, io::Read, path::Path};

use alloy_primitives::B256;
use rayon::prelude::*;

use super::{
    Layout, SEGMENT_CHUNKS, SEGMENT_SIZE, StorageError,
    tree::{SubmissionNode, SubtreeStack, ZERO_SEGMENT_ROOT, chunk_subtrees, full_segment_root},
};

/// Height of a full segment's subtree (1024 = 2^10 chunks).
const SEGMENT_HEIGHT: u32 = SEGMENT_CHUNKS.trailing_zeros();

/// The 0G Storage tree of a file: its root, layout and Flow submission nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTree {
    layout: Layout,
    root: B256,
    nodes: Vec<SubmissionNode>,
}

impl FileTree {
    /// The root hash (its `Display` is the `0x`-prefixed lowercase hex of PROTOCOL.md §6).
    pub fn root(&self) -> B256 {
        self.root
    }

    /// The file's chunk layout and flow padding.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.layout.size()
    }

    /// The Flow submission nodes: the complete subtrees of the padded chunk count in descending
    /// size, each `(root, height)`, as 0G's Flow `submit` takes them.
    pub fn submission_nodes(&self) -> &[SubmissionNode] {
        &self.nodes
    }

    /// `Σ 2^height` over the submission nodes (= the padded chunk count): the number of sectors
    /// the Flow fee `pricePerSector × Σ 2^height` is charged on.
    pub fn sectors(&self) -> u64 {
        self.layout.padded_chunks()
    }
}

/// Incremental root hasher: feed bytes with [`update`](Self::update) (or as an
/// [`std::io::Write`]), then [`finalize`](Self::finalize).
///
/// Bytes are buffered in a batch of whole segments (a few per rayon thread, at most 16 MiB); a
/// full batch is hashed segment-parallel and folded into a stack of at most 64 subtree roots, so
/// memory does not grow with the input.
#[derive(Debug)]
pub struct RootHasher {
    buf: Vec<u8>,
    filled: usize,
    size: u64,
    stack: SubtreeStack,
}

impl Default for RootHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl RootHasher {
    /// A hasher whose batch holds 4 segments per thread of the current rayon pool (4 to 64
    /// segments, 1 to 16 MiB).
    pub fn new() -> Self {
        Self::with_batch_segments(rayon::current_num_threads().clamp(1, 16).saturating_mul(4))
    }

    /// A hasher whose batch holds `segments` segments of 256 KiB (at least one).
    pub fn with_batch_segments(segments: usize) -> Self {
        Self {
            buf: vec![0; segments.max(1).saturating_mul(SEGMENT_SIZE)],
            filled: 0,
            size: 0,
            stack: SubtreeStack::default(),
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether no byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Appends `data` to the file.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(data.len());
            let (head, rest) = data.split_at(n);
            if let Some(dst) = spare.get_mut(..n) {
                dst.copy_from_slice(head);
            }
            self.advance(n);
            data = rest;
        }
    }

    /// Reads `reader` to its end into the hasher, straight into the batch buffer.
    pub fn update_reader<R: Read>(&mut self, mut reader: R) -> Result<(), StorageError> {
        loop {
            match reader.read(self.spare()) {
                Ok(0) => return Ok(()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The root, layout and submission nodes of everything fed; empty input is an error.
    pub fn finalize(mut self) -> Result<FileTree, StorageError> {
        let layout = Layout::new(self.size)?;
        let buffered = self.buf.get(..self.filled).unwrap_or_default();
        let tail_len = self.filled % SEGMENT_SIZE;
        let (full, tail) = buffered.split_at(self.filled.saturating_sub(tail_len));
        push_segments(&mut self.stack, full);
        finish(self.stack, layout, tail)
    }

    /// The unfilled part of the batch buffer (never empty).
    fn spare(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.filled..).unwrap_or_default()
    }

    /// Records `n` more bytes in the buffer, hashing the batch when it is full.
    fn advance(&mut self, n: usize) {
        self.filled = self.filled.saturating_add(n).min(self.buf.len());
        self.size = self.size.saturating_add(n as u64);
        if self.filled == self.buf.len() {
            push_segments(&mut self.stack, &self.buf);
            self.filled = 0;
        }
    }
}

impl std::io::Write for RootHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hashes whole segments in parallel and pushes their roots in order.
fn push_segments(stack: &mut SubtreeStack, segments: &[u8]) {
    let roots: Vec<B256> = segments
        .par_chunks_exact(SEGMENT_SIZE)
        .map(full_segment_root)
        .collect();
    for root in roots {
        stack.push(root, SEGMENT_HEIGHT);
    }
}

/// Pushes the last partial data segment `tail` (maybe empty) and the flow padding after it.
fn finish(mut stack: SubtreeStack, layout: Layout, tail: &[u8]) -> Result<FileTree, StorageError> {
    const SEGMENT_BYTES: u64 = SEGMENT_SIZE as u64;
    let mut index = layout.size() / SEGMENT_BYTES;
    if !tail.is_empty() {
        push_padded_segment(&mut stack, &layout, index, tail);
        index = index.saturating_add(1);
    }
    // Whole padding segments (only when the padding unit is ≥ one segment).
    while index < layout.padded_segments() {
        push_padded_segment(&mut stack, &layout, index, &[]);
        index = index.saturating_add(1);
    }
    let root = stack.root().ok_or(StorageError::EmptyInput)?;
    Ok(FileTree {
        layout,
        root,
        nodes: stack.into_nodes(),
    })
}

/// Pushes segment `index` made of `data` then zero chunks up to its padded chunk count.
fn push_padded_segment(stack: &mut SubtreeStack, layout: &Layout, index: u64, data: &[u8]) {
    let chunks = layout.padded_segment_chunks(index).unwrap_or(0);
    if data.is_empty() && chunks == SEGMENT_CHUNKS as u64 {
        stack.push(*ZERO_SEGMENT_ROOT, SEGMENT_HEIGHT);
        return;
    }
    // Fewer than 1024 chunks only for the last segment: its pieces are the smaller nodes.
    for node in chunk_subtrees(data, chunks).nodes() {
        stack.push(node.root, node.height);
    }
}

/// The tree of a byte slice, hashing its segments in parallel.
pub fn root_hash(data: &[u8]) -> Result<FileTree, StorageError> {
    let layout = Layout::new(data.len() as u64)?;
    // `len % SEGMENT_SIZE ≤ len`: the split point is within `data`.
    let (full, tail) = data.split_at(data.len().saturating_sub(data.len() % SEGMENT_SIZE));
    let mut stack = SubtreeStack::default();
    push_segments(&mut stack, full);
    finish(stack, layout, tail)
}

/// The tree of everything `reader` yields, in bounded memory (see [`RootHasher`]).
pub fn root_hash_reader<R: Read>(reader: R) -> Result<FileTree, StorageError> {
    let mut hasher = RootHasher::new();
    hasher.update_reader(reader)?;
    hasher.finalize()
}

/// The tree of the file at `path`, streamed in bounded memory.
pub fn root_hash_file(path: impl AsRef<Path>) -> Result<FileTree, StorageError> {
    root_hash_reader(File::open(path)?)
}
