#!/usr/bin/env python3
"""Write the steward-format test vectors with Tahoe-LAFS's own code.

Run it with the test virtualenv's interpreter (tahoe-lafs 1.20.0 and zfec
1.6), from the repository root:

    export STEWARD_TAHOE_VENV=/work/venv-shared   # or wherever it lives
    $STEWARD_TAHOE_VENV/bin/python crates/format/vectors/generate.py crates/format/vectors

Everything here is produced by allmydata's modules, in process, with no
network: the immutable encoder (`allmydata.immutable.encode.Encoder`) writing
through Tahoe's own `WriteBucketProxy` into memory, the mutable publisher
(`NodeMaker.create_mutable_file`) writing through a storage broker into
in-memory storage servers (`MemoryStorage`, modelled on Tahoe's test
`FakeStorage`, which needs test-only packages the virtualenv lacks),
`allmydata.hashtree`, `allmydata.dirnode` (packing, and what its node layer
lists for odd stored children), `allmydata.crypto.aes` and `.rsa`,
`allmydata.util.hashutil` and `zfec`. Where a vector names byte ranges of a
share (to flip a byte in one part), the ranges come from Tahoe's own share
readers (`ReadBucketProxy`, `MDMFSlotReadProxy`), not from steward's parser.

Segment sizes are made small (immutable: the uploadable's
`max_segment_size`; mutable: `publish.DEFAULT_MUTABLE_MAX_SEGMENT_SIZE`) so
that multi-segment files stay a few kilobytes. Mutable keys and salts are
random, so running this again rewrites those vectors with other bytes
(the other files come out the same).

Share bytes are base64, hashes and keys hex. The output files are JSON.
"""

import base64
import json
import os
import random
import struct
import sys
import unicodedata

from twisted.internet import defer, task

import zfec
from allmydata import dirnode, hashtree, uri
from allmydata.crypto import aes
from allmydata.immutable import encode, layout, upload
from allmydata.interfaces import MDMF_VERSION, SDMF_VERSION
from allmydata.mutable import publish
from allmydata.mutable.layout import MDMFSlotReadProxy
from allmydata.mutable.publish import MutableData
from allmydata.nodemaker import NodeMaker
from allmydata import client
from allmydata.node import config_from_string
from allmydata.storage_client import StorageFarmBroker
from allmydata.unknown import strip_prefix_for_ro
from allmydata.util import hashutil, mathutil
from allmydata.util.netstring import netstring


def b64(b):
    return base64.b64encode(bytes(b)).decode("ascii")


def hx(b):
    return bytes(b).hex()


# ---------------------------------------------------------------- hashes


def hash_vectors():
    rnd = random.Random(1)
    vals = [b"", b"a", bytes(rnd.randrange(256) for _ in range(100))]
    out = []
    for v in vals:
        out.append({
            "input": hx(v),
            "block_hash": hx(hashutil.block_hash(v)),
            "uri_extension_hash": hx(hashutil.uri_extension_hash(v)),
            "crypttext_hash": hx(hashutil.crypttext_hash(v)),
            "crypttext_segment_hash": hx(hashutil.crypttext_segment_hash(v)),
            "ssk_pubkey_fingerprint_hash": hx(hashutil.ssk_pubkey_fingerprint_hash(v)),
            "ssk_writekey_hash": hx(hashutil.ssk_writekey_hash(v)),
            "mutable_rwcap_salt_hash": hx(hashutil.mutable_rwcap_salt_hash(v)),
            "hmac_key16": hx(hashutil.hmac(b"k" * 16, v)),
            "empty_leaf_hash_7": hx(hashtree.empty_leaf_hash(7)),
            "pair_hash_with_itself": hx(hashtree.pair_hash(hashutil.block_hash(v),
                                                           hashutil.block_hash(v))),
        })
    salt = bytes(range(16))
    readkey = bytes(range(100, 116))
    pairs = {
        "salt": hx(salt),
        "readkey": hx(readkey),
        "ssk_readkey_data_hash": hx(hashutil.ssk_readkey_data_hash(salt, readkey)),
        "mutable_rwcap_key_hash": hx(hashutil.mutable_rwcap_key_hash(salt, readkey)),
    }
    return {"single": out, "pairs": pairs}


# ---------------------------------------------------------------- hash trees


def hashtree_vectors():
    out = []
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17]:
        leaves = [hashutil.block_hash(b"leaf %d" % i) for i in range(n)]
        t = hashtree.HashTree(leaves)
        needed = {}
        needed_with_leaf = {}
        for i in range(n):
            needed[str(i)] = sorted(t.needed_hashes(i))
            needed_with_leaf[str(i)] = sorted(t.needed_hashes(i, include_leaf=True))
        out.append({
            "num_leaves": n,
            "leaves": [hx(h) for h in leaves],
            "nodes": [hx(h) for h in t],
            "needed": needed,
            "needed_with_leaf": needed_with_leaf,
        })
    return out


# ---------------------------------------------------------------- zfec

ZFEC_PAIRS = [
    (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (2, 5), (3, 3), (3, 7), (3, 10),
    (4, 8), (5, 9), (7, 13), (10, 20), (16, 32), (25, 100), (2, 256),
    (100, 256), (128, 255), (254, 255), (255, 256), (256, 256),
]


def zfec_vectors():
    rnd = random.Random(2)
    out = []
    for (k, m) in ZFEC_PAIRS:
        blocksize = 1 if k > 100 else rnd.choice([1, 3, 8])
        blocks = [bytes(rnd.randrange(256) for _ in range(blocksize)) for _ in range(k)]
        enc = zfec.Encoder(k, m)
        outblocks = enc.encode(blocks, list(range(m)))
        # Decodings by Python's zfec from a few k-subsets (the last one
        # prefers secondary blocks), to check steward decodes the same.
        decodes = []
        for trial in range(3):
            if trial == 2:
                nums = list(range(m))[-k:]
            else:
                nums = sorted(rnd.sample(range(m), k))
            dec = zfec.Decoder(k, m)
            got = dec.decode([outblocks[i] for i in nums], nums)
            assert b"".join(got) == b"".join(blocks)
            decodes.append(nums)
        out.append({
            "k": k,
            "m": m,
            "input": [hx(b) for b in blocks],
            "output": [hx(b) for b in outblocks],
            "decode_from": decodes,
        })
    return out


# ---------------------------------------------------------------- AES


def aes_vectors():
    rnd = random.Random(3)
    out = []
    for (keylen, ivmode, n) in [(16, None, 0), (16, None, 1), (16, None, 37),
                                (16, None, 100), (16, "counter-wrap", 40),
                                (16, "random", 33)]:
        key = bytes(rnd.randrange(256) for _ in range(keylen))
        if ivmode is None:
            iv = None
        elif ivmode == "counter-wrap":
            iv = b"\x00" * 8 + b"\xff" * 8
        else:
            iv = bytes(rnd.randrange(256) for _ in range(16))
        pt = bytes(rnd.randrange(256) for _ in range(n))
        ct = aes.encrypt_data(aes.create_encryptor(key, iv), pt)
        out.append({
            "key": hx(key),
            "iv": hx(iv) if iv is not None else None,
            "plaintext": hx(pt),
            "ciphertext": hx(ct),
        })
    return out


# ---------------------------------------------------------------- RSA


def rsa_vectors():
    """Signatures by Tahoe's own RSA code (`allmydata.crypto.rsa`), with keys
    of several sizes (Tahoe makes 2048-bit ones)."""
    from allmydata.crypto import rsa
    out = []
    for bits in [1024, 2048, 4096]:
        priv, pub = rsa.create_signing_keypair(bits)
        prefix = b"signed prefix %d" % bits
        out.append({
            "bits": bits,
            "pubkey": hx(rsa.der_string_from_verifying_key(pub)),
            "prefix": hx(prefix),
            "signature": hx(rsa.sign_data(priv, prefix)),
        })
    return out


# ---------------------------------------------------------------- CHK


class MemoryRemote:
    """Stands in for a storage server's remote bucket writer: Tahoe's
    WriteBucketProxy calls `write(offset, data)` and `close()` on it."""

    def __init__(self):
        self.buf = bytearray()

    def callRemote(self, meth, *args):
        if meth == "write":
            offset, data = args
            if len(self.buf) < offset + len(data):
                self.buf.extend(b"\x00" * (offset + len(data) - len(self.buf)))
            self.buf[offset:offset + len(data)] = data
        return defer.succeed(None)


class MemoryServer:
    def __init__(self, i):
        self.i = i

    def get_name(self):
        return "mem%d" % self.i

    def get_serverid(self):
        return b"mem%d" % self.i


@defer.inlineCallbacks
def chk_upload(data, k, n, max_segment_size, force_v2=False):
    """Encode `data` with Tahoe's immutable encoder; return (readcap, shares)."""
    u = upload.Data(data, convergence=b"steward-format vectors")
    u.set_default_encoding_parameters({
        "k": k, "happy": 1, "n": n, "max_segment_size": max_segment_size})
    eu = upload.EncryptAnUploadable(u)
    e = encode.Encoder()
    yield e.set_encrypted_uploadable(eu)
    share_size = e.get_param("share_size")
    block_size = e.get_param("block_size")
    num_segments = e.get_param("num_segments")
    ht = hashtree.IncompleteHashTree(n)
    num_share_hashes = len(ht.needed_hashes(0, include_leaf=True))
    ueb_size = e.get_uri_extension_size()
    remotes = {}
    buckets = {}
    old = layout.FORCE_V2
    layout.FORCE_V2 = force_v2
    try:
        for shnum in range(n):
            remotes[shnum] = MemoryRemote()
            buckets[shnum] = layout.make_write_bucket_proxy(
                remotes[shnum], MemoryServer(shnum), share_size, block_size,
                num_segments, num_share_hashes, ueb_size)
    finally:
        layout.FORCE_V2 = old
    e.set_shareholders(buckets, {shnum: {b"mem%d" % shnum} for shnum in range(n)})
    verifycap = yield e.start()
    key = yield u.get_encryption_key()
    readcap = uri.CHKFileURI(key, verifycap.uri_extension_hash, k, n, len(data))
    assert readcap.get_verify_cap().to_string() == verifycap.to_string()
    return readcap, {shnum: bytes(r.buf) for shnum, r in remotes.items()}


class BytesBucket:
    """A remote bucket reader over share bytes, for Tahoe's ReadBucketProxy."""

    def __init__(self, data):
        self.data = data

    def callRemote(self, meth, offset, length):
        assert meth == "read"
        return defer.succeed(self.data[offset:offset + length])


@defer.inlineCallbacks
def chk_parts(share):
    """The byte ranges of each part of a CHK share, from Tahoe's reader."""
    rbp = layout.ReadBucketProxy(BytesBucket(share), MemoryServer(0), b"\x00" * 16)
    offsets = yield rbp._start_if_needed()
    fs = rbp._fieldsize
    (ueb_len,) = struct.unpack(rbp._fieldstruct,
                               share[offsets["uri_extension"]:offsets["uri_extension"] + fs])
    return {
        "version": rbp._version,
        "offsets": dict(offsets),
        "parts": {
            "header": [0, offsets["data"]],
            "block_data": [offsets["data"], offsets["plaintext_hash_tree"]],
            "crypttext_hash_tree": [offsets["crypttext_hash_tree"], offsets["block_hashes"]],
            "block_hash_tree": [offsets["block_hashes"], offsets["share_hashes"]],
            "share_hash_chain": [offsets["share_hashes"], offsets["uri_extension"]],
            "uri_extension": [offsets["uri_extension"] + fs,
                              offsets["uri_extension"] + fs + ueb_len],
        },
    }


@defer.inlineCallbacks
def chk_vector(name, data, k, n, max_segment_size, force_v2=False):
    readcap, shares = yield chk_upload(data, k, n, max_segment_size, force_v2)
    parts = yield chk_parts(shares[0])
    ueb = shares[0][parts["parts"]["uri_extension"][0]:parts["parts"]["uri_extension"][1]]
    fields = uri.unpack_extension(ueb)
    return {
        "name": name,
        "readcap": readcap.to_string().decode("ascii"),
        "verifycap": readcap.get_verify_cap().to_string().decode("ascii"),
        "plaintext": b64(data),
        "k": k,
        "n": n,
        "shares": {str(s): b64(b) for s, b in sorted(shares.items())},
        "layout": parts,
        "ueb": b64(ueb),
        "ueb_fields": {key: (v if isinstance(v, int) else hx(v)) for key, v in fields.items()},
    }


# ---------------------------------------------------------------- mutable


class MemoryStorage:
    """The mutable shares of one storage index on several fake servers."""

    def __init__(self):
        self._peers = {}


class MemoryStorageServer:
    """Answers the two calls Tahoe's mutable publisher and retriever make
    (`slot_readv`, `slot_testv_and_readv_and_writev`) from MemoryStorage."""

    def __init__(self, peerid, storage):
        self.peerid = peerid
        self.storage = storage

    def callRemote(self, methname, *args, **kwargs):
        return defer.maybeDeferred(getattr(self, methname), *args, **kwargs)

    def callRemoteOnly(self, methname, *args, **kwargs):
        self.callRemote(methname, *args, **kwargs)

    def advise_corrupt_share(self, *args):
        pass

    def slot_readv(self, storage_index, shnums, readv):
        shares = self.storage._peers.get(self.peerid, {})
        return defer.succeed({
            shnum: [data[o:o + n] for (o, n) in readv]
            for shnum, data in shares.items() if not shnums or shnum in shnums})

    def slot_testv_and_readv_and_writev(self, storage_index, secrets, tw_vectors, read_vector):
        shares = self.storage._peers.setdefault(self.peerid, {})
        readv = {}
        for shnum, (testv, writev, new_length) in tw_vectors.items():
            readv[shnum] = [specimen for (_o, _l, _op, specimen) in testv]
            buf = bytearray(shares.get(shnum, b""))
            for (offset, data) in writev:
                if len(buf) < offset + len(data):
                    buf.extend(b"\x00" * (offset + len(data) - len(buf)))
                buf[offset:offset + len(data)] = data
            shares[shnum] = bytes(buf)
        return defer.succeed((True, readv))


def make_storagebroker(storage, num_peers):
    broker = StorageFarmBroker(True, None, config_from_string("/dev/null", "tub.port", ""))
    for i in range(num_peers):
        peerid = base64.b32encode(hashutil.tagged_hash(b"peerid", b"%d" % i)[:20]).lower().rstrip(b"=")
        ann = {"anonymous-storage-FURL": "pb://%s@nowhere/fake" % peerid.decode(),
               "permutation-seed-base32": peerid}
        broker.test_add_rref(peerid, MemoryStorageServer(peerid, storage), ann)
    return broker


def make_nodemaker(storage, k, n):
    broker = make_storagebroker(storage, num_peers=n)
    sh = client.SecretHolder(b"lease secret", b"convergence secret")
    return NodeMaker(broker, sh, None, None, None, {"k": k, "n": n},
                     SDMF_VERSION, client.KeyGenerator())


def stored_shares(storage):
    shares = {}
    for peer in storage._peers.values():
        for shnum, data in peer.items():
            assert shnum not in shares
            shares[shnum] = data
    return shares


@defer.inlineCallbacks
def mutable_parts(share):
    """The byte ranges of each part of a mutable share, from Tahoe's reader."""
    r = MDMFSlotReadProxy(None, None, 0, share, data_is_everything=True)
    verinfo = yield r.get_verinfo()
    (seqnum, root_hash, salt, segsize, datalen, k, n, prefix, offsets) = verinfo
    o = dict(offsets)
    if r._version_number == 0:
        parts = {
            "signed_prefix": [0, 75],
            "verification_key": [107, o["signature"]],
            "signature": [o["signature"], o["share_hash_chain"]],
            "share_hash_chain": [o["share_hash_chain"], o["block_hash_tree"]],
            "block_hash_tree": [o["block_hash_tree"], o["share_data"]],
            "share_data": [o["share_data"], o["enc_privkey"]],
            "enc_privkey": [o["enc_privkey"], o["EOF"]],
        }
    else:
        parts = {
            "signed_prefix": [0, 59],
            "enc_privkey": [o["enc_privkey"], o["share_hash_chain"]],
            "share_hash_chain": [o["share_hash_chain"], o["signature"]],
            "signature": [o["signature"], o["verification_key"]],
            "verification_key": [o["verification_key"], o["verification_key_end"]],
            "share_data": [o["share_data"], o["block_hash_tree"]],
            "block_hash_tree": [o["block_hash_tree"], o["EOF"]],
        }
    return {
        "version": r._version_number,
        "seqnum": seqnum,
        "root_hash": hx(root_hash),
        "salt": hx(salt) if salt else None,
        "segsize": segsize,
        "datalen": datalen,
        "k": k,
        "n": n,
        "offsets": o,
        "parts": parts,
    }


@defer.inlineCallbacks
def mutable_vector(name, data, version, k, n, max_segment_size=None):
    storage = MemoryStorage()
    nm = make_nodemaker(storage, k, n)
    old = publish.DEFAULT_MUTABLE_MAX_SEGMENT_SIZE
    if max_segment_size is not None:
        publish.DEFAULT_MUTABLE_MAX_SEGMENT_SIZE = max_segment_size
    try:
        node = yield nm.create_mutable_file(MutableData(data), version=version)
    finally:
        publish.DEFAULT_MUTABLE_MAX_SEGMENT_SIZE = old
    got = yield node.download_best_version()
    assert got == data
    shares = stored_shares(storage)
    parts = yield mutable_parts(shares[0])
    return {
        "name": name,
        "writecap": node.get_uri().decode("ascii"),
        "readcap": node.get_readonly_uri().decode("ascii"),
        "verifycap": node.get_verify_cap().to_string().decode("ascii"),
        "plaintext": b64(data),
        "shares": {str(s): b64(b) for s, b in sorted(shares.items())},
        "layout": parts,
    }


@defer.inlineCallbacks
def two_versions_vector():
    """An SDMF file published, then overwritten: the shares of both
    versions, to test choosing a version."""
    storage = MemoryStorage()
    nm = make_nodemaker(storage, 2, 4)
    node = yield nm.create_mutable_file(MutableData(b"first version"), version=SDMF_VERSION)
    old = stored_shares(storage)
    yield node.overwrite(MutableData(b"second version, longer"))
    new = stored_shares(storage)
    got = yield node.download_best_version()
    assert got == b"second version, longer"
    return {
        "readcap": node.get_readonly_uri().decode("ascii"),
        "old": {"plaintext": b64(b"first version"),
                "shares": {str(s): b64(b) for s, b in sorted(old.items())}},
        "new": {"plaintext": b64(b"second version, longer"),
                "shares": {str(s): b64(b) for s, b in sorted(new.items())}},
    }


# ---------------------------------------------------------------- directories


def stored_entry(name, node, metadata, writekey, deep_immutable):
    """What `_pack_normalized_children` stores for one child, computed with
    the same Tahoe calls it makes."""
    rw = node.get_write_uri() or b""
    ro = node.get_readonly_uri() or b""
    return {
        "name": name,
        "ro_uri": strip_prefix_for_ro(ro, deep_immutable).decode("utf-8"),
        "rw_uri": rw.decode("utf-8") if writekey is not None else "",
        "metadata_json": json.dumps(metadata),
    }


@defer.inlineCallbacks
def directory_vectors():
    out = {"packings": [], "directories": []}

    # Children: one of each kind of cap, created with Tahoe's own code.
    storage = MemoryStorage()
    nm = make_nodemaker(storage, 2, 5)
    chk_cap, _ = yield chk_upload(b"child file contents " * 10, 2, 5, 1000)
    sdmf = yield nm.create_mutable_file(MutableData(b"sdmf child"), version=SDMF_VERSION)
    mdmf = yield nm.create_mutable_file(MutableData(b"mdmf child"), version=MDMF_VERSION)
    subdir = yield nm.create_new_mutable_directory({}, version=SDMF_VERSION)
    lit = uri.LiteralFileURI(b"tiny").to_string()
    imm_dir_cap, _ = yield chk_upload(b"not really a dir" * 10, 2, 5, 1000)
    imm_dir = uri.ImmutableDirectoryURI(imm_dir_cap).to_string()

    md = {"tahoe": {"linkcrtime": 1700000000.5, "linkmotime": 1700000001.25},
          "mtime": 1600000000, "note": "caf\u00e9"}
    mutable_children = {
        "chk file": (nm.create_from_cap(chk_cap.to_string()), md),
        "caf\u00e9 \u65e5\u672c\u8a9e": (nm.create_from_cap(lit), {}),
        "sdmf": (nm.create_from_cap(sdmf.get_uri()), {"a": [1, 2, {"b": None}]}),
        "mdmf read-only": (nm.create_from_cap(mdmf.get_readonly_uri()), {}),
        "subdir": (nm.create_from_cap(subdir.get_uri()), md),
        "immutable dir": (nm.create_from_cap(imm_dir), {}),
        "n" * 250: (nm.create_from_cap(lit), {}),
        "unknown": (nm.create_from_cap(None, b"ro.x-tahoe-future-test:abc"), {}),
    }
    immutable_children = {
        "chk file": (nm.create_from_cap(chk_cap.to_string()), md),
        "lit \u00e9": (nm.create_from_cap(lit), {}),
        "immutable dir": (nm.create_from_cap(imm_dir), {}),
        "unknown": (nm.create_from_cap(None, b"imm.x-tahoe-future-test:abc"), {}),
    }

    writekey = bytes(range(16))
    for label, children, wk, deep in [
            ("mutable, with writekey", mutable_children, writekey, False),
            ("mutable, no writekey", mutable_children, None, False),
            ("immutable", immutable_children, None, True)]:
        packed = dirnode.pack_children(children, wk, deep_immutable=deep)
        out["packings"].append({
            "label": label,
            "writekey": hx(wk) if wk else None,
            "deep_immutable": deep,
            "packed": b64(packed),
            "entries": [stored_entry(nm_, node, meta, wk, deep)
                        for nm_, (node, meta) in sorted(children.items())],
        })

    # A name stored in NFD form (a writer that did not normalize): Tahoe's
    # reader normalizes it to NFC.
    nfd = unicodedata.normalize("NFD", "cafe\u0301 r\u00e9sum\u00e9")
    raw = {nfd: (nm.create_from_cap(lit), {})}
    packed = dirnode._pack_normalized_children(raw, None)
    out["packings"].append({
        "label": "NFD name",
        "writekey": None,
        "deep_immutable": False,
        "packed": b64(packed),
        "entries": [{"name": unicodedata.normalize("NFC", nfd),
                     "ro_uri": lit.decode("ascii"), "rw_uri": "",
                     "metadata_json": "{}"}],
    })

    # encrypted write caps, as _encrypt_rw_uri makes them
    out["rw_uri_encryptions"] = [
        {"writekey": hx(writekey), "rw_uri": c.decode("ascii"),
         "encrypted": hx(dirnode._encrypt_rw_uri(writekey, c))}
        for c in [sdmf.get_uri(), subdir.get_uri(), b""]]

    # Whole directories on the grid: SDMF, MDMF (several segments), CHK, LIT.
    for label, version, maxseg in [("DIR2 (SDMF)", SDMF_VERSION, None),
                                   ("DIR2-MDMF", MDMF_VERSION, 400)]:
        st = MemoryStorage()
        nm2 = make_nodemaker(st, 2, 5)
        old = publish.DEFAULT_MUTABLE_MAX_SEGMENT_SIZE
        if maxseg is not None:
            publish.DEFAULT_MUTABLE_MAX_SEGMENT_SIZE = maxseg
        try:
            d = yield nm2.create_new_mutable_directory(mutable_children, version=version)
        finally:
            publish.DEFAULT_MUTABLE_MAX_SEGMENT_SIZE = old
        listing = yield d.list()
        shares = stored_shares(st)
        parts = yield mutable_parts(shares[0])
        out["directories"].append({
            "label": label,
            "writecap": d.get_uri().decode("ascii"),
            "readcap": d.get_readonly_uri().decode("ascii"),
            "shares": {str(s): b64(b) for s, b in sorted(shares.items())},
            "layout": parts,
            "entries": [stored_entry(name, node, meta, writekey, False)
                        for name, (node, meta) in sorted(mutable_children.items())],
            "listed": sorted(listing.keys()),
        })

    packed = dirnode.pack_children(immutable_children, None, deep_immutable=True)
    cap, shares = yield chk_upload(packed, 3, 7, 200)
    dircap = uri.ImmutableDirectoryURI(cap)
    out["directories"].append({
        "label": "DIR2-CHK",
        "writecap": None,
        "readcap": dircap.to_string().decode("ascii"),
        "shares": {str(s): b64(b) for s, b in sorted(shares.items())},
        "entries": [stored_entry(name, node, meta, None, True)
                    for name, (node, meta) in sorted(immutable_children.items())],
    })

    out["children"] = yield child_vectors(nm, chk_cap, sdmf, mdmf, subdir, lit, imm_dir)

    for label, children in [("DIR2-LIT (empty)", {}),
                            ("DIR2-LIT", {"a": (nm.create_from_cap(lit), {})})]:
        packed = dirnode.pack_children(children, None, deep_immutable=True)
        assert len(packed) <= upload.Uploader.URI_LIT_SIZE_THRESHOLD, len(packed)
        dircap = uri.LiteralDirectoryURI(uri.LiteralFileURI(packed))
        out["directories"].append({
            "label": label,
            "writecap": None,
            "readcap": dircap.to_string().decode("ascii"),
            "shares": {},
            "entries": [stored_entry(name, node, meta, None, True)
                        for name, (node, meta) in sorted(children.items())],
        })
    return out


@defer.inlineCallbacks
def child_vectors(nm, chk_cap, sdmf, mdmf, subdir, lit, imm_dir):
    """What Tahoe's node layer (`DirectoryNode._unpack_contents` through
    `nodemaker.create_from_cap` and `UnknownNode`) makes of stored children,
    including odd and invalid ones written raw: which it lists, with which
    caps, and which it drops."""
    chk = chk_cap.to_string()
    ssk_w, ssk_r = sdmf.get_uri(), sdmf.get_readonly_uri()
    mdmf_w, mdmf_r = mdmf.get_uri(), mdmf.get_readonly_uri()
    dir_w, dir_r = subdir.get_uri(), subdir.get_readonly_uri()
    ssk_v = sdmf.get_verify_cap().to_string()
    bad_chk = b"URI:CHK:aaaa:bbbb:3:10:100"
    mutable_entries = [
        ("chk", chk, b""), ("sdmf rw", ssk_r, ssk_w), ("sdmf rw only", b"", ssk_w),
        ("sdmf ro", ssk_r, b""), ("ro. prefixed", b"ro." + ssk_r, b""),
        ("imm. prefixed chk", b"imm." + chk, b""), ("unknown ro", b"x-tahoe-future:abc", b""),
        ("unknown rw only", b"", b"x-tahoe-future:rw"),
        ("unknown both", b"x-tahoe-future:ro", b"x-tahoe-future:rw"),
        ("malformed chk", bad_chk, b""), ("write cap in ro slot", ssk_w, b""),
        ("no caps", b"", b""), ("dir2-chk", imm_dir, b""), ("lit", lit, b""),
        ("dir2", dir_r, dir_w), ("mdmf", mdmf_r, mdmf_w),
        ("malformed rw", ssk_r, b"URI:SSK:bad"), ("ro. unknown", b"ro.x-tahoe-future:ro", b""),
        ("prefixed unknown rw only", b"", b"ro.x-tahoe-future:single"),
        ("imm. mutable", b"imm." + ssk_r, b""), ("ssk verifier", ssk_v, b""),
        ("imm. unknown rw", b"", b"imm.x-tahoe-future:i"),
    ]
    immutable_entries = [
        ("chk", chk, b""), ("sdmf ro", ssk_r, b""), ("unknown", b"x-tahoe-future:abc", b""),
        ("imm. unknown", b"imm.x-tahoe-future:abc", b""), ("ro. unknown", b"ro.x-tahoe-future:abc", b""),
        ("lit", lit, b""), ("dir2-chk", imm_dir, b""), ("dir2 ro", dir_r, b""),
        ("malformed chk", bad_chk, b""), ("no caps", b"", b""), ("ssk verifier", ssk_v, b""),
        ("imm. chk", b"imm." + chk, b""), ("ro. chk", b"ro." + chk, b""),
    ]
    d = yield nm.create_new_mutable_directory({}, version=SDMF_VERSION)
    writekey = d._node.get_writekey()
    rod = nm.create_from_cap(d.get_readonly_uri())
    immd = nm.create_from_cap(imm_dir)

    def raw(entries, wk):
        out = b""
        for (name, ro, rw) in entries:
            rwdata = netstring(dirnode._encrypt_rw_uri(wk, rw)) if wk else netstring(b"")
            out += netstring(netstring(name.encode("utf-8")) + netstring(ro) + rwdata + netstring(b"{}"))
        return out

    out = []
    for label, node, entries, wk in [
            ("mutable, write cap", d, mutable_entries, writekey),
            ("mutable, read cap", rod, mutable_entries, writekey),
            ("immutable", immd, immutable_entries, None)]:
        children = node._unpack_contents(raw(entries, wk))
        listed = {}
        for name, (child, _md) in children.items():
            w = child.get_write_uri()
            r = child.get_readonly_uri()
            listed[name] = {"unknown": child.is_unknown(),
                            "rw_uri": w.decode("utf-8") if w else None,
                            "ro_uri": r.decode("utf-8") if r else None}
        out.append({
            "label": label,
            "writekey": hx(writekey) if "write" in label else None,
            "mutable": node.is_mutable(),
            "packed": b64(raw(entries, wk)),
            "listed": listed,
        })
    return out


# ---------------------------------------------------------------- main


def write(outdir, name, obj):
    path = os.path.join(outdir, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


@defer.inlineCallbacks
def main(reactor, outdir):
    write(outdir, "hashes.json", hash_vectors())
    write(outdir, "hashtree.json", hashtree_vectors())
    write(outdir, "zfec.json", zfec_vectors())
    write(outdir, "aes.json", aes_vectors())
    write(outdir, "rsa.json", rsa_vectors())

    chk = []
    # several segments, the tail shorter and not a multiple of k
    chk.append((yield chk_vector("3-of-10, 8 segments, short tail", bytes(range(256)) * 4 + b"tail", 3, 10, 128)))
    # the tail segment exactly full
    chk.append((yield chk_vector("2-of-5, 4 full segments", bytes((i * 7) % 256 for i in range(512)), 2, 5, 128)))
    chk.append((yield chk_vector("1-of-1, one segment", b"x" * 100, 1, 1, 1000)))
    chk.append((yield chk_vector("7-of-13, 3 segments", os.urandom(0) + bytes((i * 13) % 251 for i in range(600)), 7, 13, 210)))
    chk.append((yield chk_vector("2-of-3, v2 layout", b"v2 share layout " * 20, 2, 3, 64, force_v2=True)))
    write(outdir, "chk.json", chk)

    mut = []
    mut.append((yield mutable_vector("SDMF 2-of-5", b"sdmf contents " * 20, SDMF_VERSION, 2, 5)))
    mut.append((yield mutable_vector("SDMF 3-of-10 empty", b"", SDMF_VERSION, 3, 10)))
    mut.append((yield mutable_vector("MDMF 2-of-5, 4 segments", bytes(range(256)) * 3 + b"t", MDMF_VERSION, 2, 5, 200)))
    mut.append((yield mutable_vector("MDMF 3-of-7, one segment", b"one segment", MDMF_VERSION, 3, 7)))
    mut.append((yield mutable_vector("MDMF 1-of-1", b"only one share", MDMF_VERSION, 1, 1)))
    mut.append((yield mutable_vector("MDMF 2-of-5 empty", b"", MDMF_VERSION, 2, 5)))
    write(outdir, "mutable.json", mut)
    write(outdir, "versions.json", (yield two_versions_vector()))

    write(outdir, "dirnode.json", (yield directory_vectors()))


if __name__ == "__main__":
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    task.react(main, [outdir])
