"""Fixed names of the HDF5 embedding cache (documented in README "Cache layout").

Anyone with h5py can read a cache: captions/text, captions/image_index, captions/embedding,
images/id, images/path, and the root attributes below.
"""
CAPTION_TEXT = "captions/text"  # [N] UTF-8 str
CAPTION_IMAGE_INDEX = "captions/image_index"  # [N] int64, row in images/
CAPTION_UNIQUE_INDEX = "captions/unique_index"  # [N] int64 row in the (length, text)-sorted distinct captions
CAPTION_EMBEDDING = "captions/embedding"  # [N, D] float32 (or float16 with --dtype float16)
IMAGE_ID = "images/id"  # [M] UTF-8 str
IMAGE_PATH = "images/path"  # [M] UTF-8 str, absolute
TEST_ID = "test/id"  # [T] UTF-8 str (optional: held-out test captions of the dataset)
TEST_TEXT = "test/text"  # [T] UTF-8 str
IMAGE_LABEL = "images/label"  # [M] int64 class id of each image (optional: only a labelled dataset)
LABEL_NAME = "labels/name"  # [K] UTF-8 str class names, sorted; images/label indexes them
ENCODER_STATE = "encoder_state"  # group: fitted encoder arrays (tfidf vocabulary, idf), may be empty

# root attributes
ATTR_ENCODER = "encoder"  # spec string
ATTR_ENCODER_CONFIG = "encoder_config"  # JSON
ATTR_DIM = "dim"
ATTR_FINGERPRINT = "fingerprint"  # hash of dataset ids + captions + encoder config
ATTR_COMPLETE = "complete"  # bool
ATTR_DATASET_NAME = "dataset_name"
ATTR_DATASET_ROOT = "dataset_root"
ATTR_DATASET_LAYOUT = "dataset_layout"
ATTR_VERSIONS = "versions"  # JSON {library: version}
ATTR_CREATED = "created"  # ISO time
ATTR_LABELS = "labels"  # where the labels came from: "class" or attribute names "petal_color,petal_shape" (if any)

# build bookkeeping (cache/writer.py)
ATTR_DTYPE = "dtype"  # "float32" | "float16"
ATTR_NUM_UNIQUE = "num_unique"  # U distinct captions
ATTR_CHUNK_SIZE = "chunk_size"  # distinct captions per encoding step
ATTR_NUM_CHUNKS = "num_chunks"
ATTR_CHUNKS_DONE = "chunks_done"  # progress of an unfinished build
ATTR_BATCH_SIZE = "batch_size"  # encoder batch size of the build (0 = encoder default)
ATTR_FORMAT = "cache_format"  # 1 (token states are optional extras: old readers ignore them)

# token states (precompute_embeddings.py --tokens; cache/tokens.py), absent from sentence-only caches
TOKENS_STATES = "tokens/states"  # [U, L, D] float16, unique order, zeros beyond each length
TOKENS_LENGTHS = "tokens/lengths"  # [U] int32
TOKENS_IDS = "tokens/ids"  # [U, L] int32, pad id beyond each length
ATTR_TOKENS = "tokens"  # JSON config (cache/tokens.py)
