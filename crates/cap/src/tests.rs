//! Unit tests. The vectors below were printed by tahoe-lafs 1.20.0
//! (`allmydata.uri.from_string`, `.to_string()`, `.get_readonly()`,
//! `.get_verify_cap()`, `.get_storage_index()`, `.is_mutable()`,
//! `.is_readonly()`) for caps built from fixed keys:
//! CHK key = bytes 0..16, UEB hash = bytes 0x20..0x40, k=3 N=10 size=123456;
//! SSK writekey = 0x40..0x50, fingerprint = 0x60..0x80;
//! MDMF writekey = 0x80..0x90, fingerprint = 0xa0..0xc0;
//! LIT data = b"hello world", b"", b"a", b"abcd", b"abcde".
//!
//! Tahoe's own `get_verify_cap()` raises for `DIR2-CHK-Verifier` and
//! `DIR2-MDMF-Verifier` (it wraps the inner verifier in the wrong class);
//! for those two the expected verify cap is the cap itself.

use super::*;
use std::collections::HashSet;

struct V {
    input: &'static str,
    class: &'static str,
    canonical: &'static str,
    read: Option<&'static str>,
    verify: Option<&'static str>,
    si: Option<&'static str>,
    tahoe_mutable: bool,
    tahoe_readonly: bool,
}

#[rustfmt::skip]
const VECTORS: &[V] = &[
    V { input: "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", class: "CHKFileURI", canonical: "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", class: "CHKFileVerifierURI", canonical: "URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:CHK:2di5fu6u2xlnpwgz3ln5zxo634:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:1:1:0", class: "CHKFileURI", canonical: "URI:CHK:2di5fu6u2xlnpwgz3ln5zxo634:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:1:1:0", read: Some("URI:CHK:2di5fu6u2xlnpwgz3ln5zxo634:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:1:1:0"), verify: Some("URI:CHK-Verifier:knu5xx4fndamvg5sajyvyyo5ay:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:1:1:0"), si: Some("knu5xx4fndamvg5sajyvyyo5ay"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:LIT:nbswy3dpeb3w64tmmq", class: "LiteralFileURI", canonical: "URI:LIT:nbswy3dpeb3w64tmmq", read: Some("URI:LIT:nbswy3dpeb3w64tmmq"), verify: None, si: None, tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:LIT:", class: "LiteralFileURI", canonical: "URI:LIT:", read: Some("URI:LIT:"), verify: None, si: None, tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:LIT:me", class: "LiteralFileURI", canonical: "URI:LIT:me", read: Some("URI:LIT:me"), verify: None, si: None, tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:LIT:mfrggza", class: "LiteralFileURI", canonical: "URI:LIT:mfrggza", read: Some("URI:LIT:mfrggza"), verify: None, si: None, tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:LIT:mfrggzdf", class: "LiteralFileURI", canonical: "URI:LIT:mfrggzdf", read: Some("URI:LIT:mfrggzdf"), verify: None, si: None, tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:SSK:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", class: "WriteableSSKFileURI", canonical: "URI:SSK:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", read: Some("URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), verify: Some("URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), si: Some("ma6zqcta4clwzyubalsjarmwwy"), tahoe_mutable: true, tahoe_readonly: false },
    V { input: "URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", class: "ReadonlySSKFileURI", canonical: "URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", read: Some("URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), verify: Some("URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), si: Some("ma6zqcta4clwzyubalsjarmwwy"), tahoe_mutable: true, tahoe_readonly: true },
    V { input: "URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", class: "SSKVerifierURI", canonical: "URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", read: Some("URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), verify: Some("URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), si: Some("ma6zqcta4clwzyubalsjarmwwy"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", class: "WriteableMDMFFileURI", canonical: "URI:MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: true, tahoe_readonly: false },
    V { input: "URI:MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", class: "ReadonlyMDMFFileURI", canonical: "URI:MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: true, tahoe_readonly: true },
    V { input: "URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", class: "MDMFVerifierURI", canonical: "URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:DIR2:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", class: "DirectoryURI", canonical: "URI:DIR2:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", read: Some("URI:DIR2-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), verify: Some("URI:DIR2-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), si: Some("ma6zqcta4clwzyubalsjarmwwy"), tahoe_mutable: true, tahoe_readonly: false },
    V { input: "URI:DIR2-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", class: "ReadonlyDirectoryURI", canonical: "URI:DIR2-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", read: Some("URI:DIR2-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), verify: Some("URI:DIR2-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), si: Some("ma6zqcta4clwzyubalsjarmwwy"), tahoe_mutable: true, tahoe_readonly: true },
    V { input: "URI:DIR2-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", class: "DirectoryURIVerifier", canonical: "URI:DIR2-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", read: Some("URI:DIR2-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), verify: Some("URI:DIR2-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), si: Some("ma6zqcta4clwzyubalsjarmwwy"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:DIR2-CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", class: "ImmutableDirectoryURI", canonical: "URI:DIR2-CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:DIR2-CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:DIR2-CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:DIR2-CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", class: "ImmutableDirectoryURIVerifier", canonical: "URI:DIR2-CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:DIR2-CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:DIR2-CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:DIR2-LIT:nbswy3dpeb3w64tmmq", class: "LiteralDirectoryURI", canonical: "URI:DIR2-LIT:nbswy3dpeb3w64tmmq", read: Some("URI:DIR2-LIT:nbswy3dpeb3w64tmmq"), verify: None, si: None, tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:DIR2-LIT:", class: "LiteralDirectoryURI", canonical: "URI:DIR2-LIT:", read: Some("URI:DIR2-LIT:"), verify: None, si: None, tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:DIR2-MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", class: "MDMFDirectoryURI", canonical: "URI:DIR2-MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:DIR2-MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:DIR2-MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: true, tahoe_readonly: false },
    V { input: "URI:DIR2-MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", class: "ReadonlyMDMFDirectoryURI", canonical: "URI:DIR2-MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:DIR2-MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:DIR2-MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: true, tahoe_readonly: true },
    V { input: "URI:DIR2-MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", class: "MDMFDirectoryURIVerifier", canonical: "URI:DIR2-MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:DIR2-MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:DIR2-MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q:3:131073", class: "WriteableMDMFFileURI", canonical: "URI:MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: true, tahoe_readonly: false },
    V { input: "URI:MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q:", class: "ReadonlyMDMFFileURI", canonical: "URI:MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: true, tahoe_readonly: true },
    V { input: "URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q:x:y", class: "MDMFVerifierURI", canonical: "URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:DIR2-MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q:3:131073", class: "MDMFDirectoryURI", canonical: "URI:DIR2-MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q", read: Some("URI:DIR2-MDMF-RO:fy7flrajvfipkazvynmzg2vi6i:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), verify: Some("URI:DIR2-MDMF-Verifier:rdaouumeq5fdecnfvcbzm72hh4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q"), si: Some("rdaouumeq5fdecnfvcbzm72hh4"), tahoe_mutable: true, tahoe_readonly: false },
    V { input: "URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456xyz", class: "CHKFileVerifierURI", canonical: "URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456:extra", class: "CHKFileVerifierURI", canonical: "URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:003:0010:0123456", class: "CHKFileURI", canonical: "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "ro.URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", class: "ReadonlySSKFileURI", canonical: "URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", read: Some("URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), verify: Some("URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), si: Some("ma6zqcta4clwzyubalsjarmwwy"), tahoe_mutable: true, tahoe_readonly: true },
    V { input: "imm.URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", class: "CHKFileURI", canonical: "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "ro.URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", class: "CHKFileURI", canonical: "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456", read: Some("URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), verify: Some("URI:CHK-Verifier:hdis5iaveku6lnlaiccydyid7q:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456"), si: Some("hdis5iaveku6lnlaiccydyid7q"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "imm.URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", class: "SSKVerifierURI", canonical: "URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q", read: Some("URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), verify: Some("URI:SSK-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q"), si: Some("ma6zqcta4clwzyubalsjarmwwy"), tahoe_mutable: false, tahoe_readonly: true },
    V { input: "imm.URI:LIT:nbswy3dpeb3w64tmmq", class: "LiteralFileURI", canonical: "URI:LIT:nbswy3dpeb3w64tmmq", read: Some("URI:LIT:nbswy3dpeb3w64tmmq"), verify: None, si: None, tahoe_mutable: false, tahoe_readonly: true },
];

/// Inputs for which Tahoe's `uri.from_string` returns an `UnknownURI`.
#[rustfmt::skip]
const TAHOE_REJECTS: &[&str] = &[
    "",
    "hello",
    "URI:",
    "URI:FOO:abc",
    "URI:CHK:",
    "ro.URI:SSK:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q",
    "imm.URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q",
    "imm.URI:DIR2:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q",
    "ro.ro.URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q",
    "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456:1",
    "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:12345x",
    "URI:CHK:AAAQEAYEAUDAOCAJBIFQYDIOB4:EAQSEIZEEUTCOKBJFIVSYLJOF4YDCMRTGQ2TMNZYHE5DWPB5HY7Q:3:10:123456",
    "URI:SSK:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q:",
    "URI:SSK:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz",
    "URI:SSK:ibaueq2eivdeoscjjjfuytkojb:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q",
    "URI:LIT:abc",
    "URI:LIT:ab",
    "URI:LIT:a",
    "URI:DIR2-LIT:x",
    "URI:MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27qx",
];

fn kind_of_class(class: &str) -> CapKind {
    use CapKind::*;
    match class {
        "CHKFileURI" => Chk,
        "CHKFileVerifierURI" => ChkVerifier,
        "LiteralFileURI" => Lit,
        "WriteableSSKFileURI" => Ssk,
        "ReadonlySSKFileURI" => SskRo,
        "SSKVerifierURI" => SskVerifier,
        "WriteableMDMFFileURI" => Mdmf,
        "ReadonlyMDMFFileURI" => MdmfRo,
        "MDMFVerifierURI" => MdmfVerifier,
        "DirectoryURI" => Dir2,
        "ReadonlyDirectoryURI" => Dir2Ro,
        "DirectoryURIVerifier" => Dir2Verifier,
        "ImmutableDirectoryURI" => Dir2Chk,
        "ImmutableDirectoryURIVerifier" => Dir2ChkVerifier,
        "LiteralDirectoryURI" => Dir2Lit,
        "MDMFDirectoryURI" => Dir2Mdmf,
        "ReadonlyMDMFDirectoryURI" => Dir2MdmfRo,
        "MDMFDirectoryURIVerifier" => Dir2MdmfVerifier,
        other => panic!("unmapped class {other}"),
    }
}

/// The secret part of a cap-like string: everything after `URI:KIND:`.
fn secret_part(s: &str) -> &str {
    match s.find("URI:").and_then(|i| s[i + 4..].split_once(':')) {
        Some((_, rest)) => rest.trim(),
        None => s.trim(),
    }
}

/// `text` must not contain any 6-character window of `secret`.
fn assert_no_leak(text: &str, secret: &str) {
    let chars: Vec<char> = secret.chars().collect();
    for w in chars.windows(6) {
        let w: String = w.iter().collect();
        assert!(!text.contains(&w), "{text:?} leaks {w:?} of the secret");
    }
}

fn cap(s: &str) -> Cap {
    Cap::parse(s).unwrap_or_else(|e| panic!("parse failed: {e}"))
}

const CHK: &str = "URI:CHK:aaaqeayeaudaocajbifqydiob4:eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q:3:10:123456";
const SSK: &str =
    "URI:SSK:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q";
const SSK_RO: &str =
    "URI:SSK-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q";
const DIR2: &str =
    "URI:DIR2:ibaueq2eivdeoscjjjfuytkoj4:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q";
const DIR2_RO: &str =
    "URI:DIR2-RO:r2syxuartnez2cmsn3ixlegm6i:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q";
const DIR2_V: &str = "URI:DIR2-Verifier:ma6zqcta4clwzyubalsjarmwwy:mbqwey3emvtgo2djnjvwy3lon5yhc4ttor2xm53ypf5hw7d5pz7q";
const DIR2_MDMF: &str =
    "URI:DIR2-MDMF:qcayfa4eqwdipcejrkfyzdmor4:ucq2fi5euwtkpkfjvkv2zlnov6yldmvtws23nn5yxg5lxpf5x27q";
const LIT: &str = "URI:LIT:nbswy3dpeb3w64tmmq";

#[test]
fn tahoe_vectors_parse_classify_and_derive() {
    for v in VECTORS {
        let c = cap(v.input);
        let kind = kind_of_class(v.class);
        assert_eq!(c.kind(), kind, "{}", v.input);
        assert_eq!(c.expose(), v.canonical, "canonical form of {}", v.input);
        assert_eq!(
            c.storage_index().map(|s| s.to_string()).as_deref(),
            v.si,
            "SI of {}",
            v.input
        );
        assert_eq!(
            c.authority() != Authority::Write,
            v.tahoe_readonly,
            "{}",
            v.input
        );
        // Tahoe's is_mutable() is false for verify caps; ours describes the object.
        assert_eq!(
            c.is_mutable() && c.authority() != Authority::Verify,
            v.tahoe_mutable,
            "{}",
            v.input
        );

        let read = c.to_read_cap();
        if c.authority() == Authority::Verify {
            assert!(
                read.is_none(),
                "verify cap {} must not give a read cap",
                v.input
            );
            assert_eq!(v.read, Some(v.canonical)); // Tahoe's get_readonly() is the identity here
        } else {
            let read = read.unwrap();
            assert_eq!(Some(read.expose()), v.read, "read cap of {}", v.input);
            assert_eq!(read.authority(), Authority::Read);
            assert_eq!(read.storage_index(), c.storage_index());
            assert_eq!(read.to_verify_cap(), c.to_verify_cap());
            assert_eq!(cap(read.expose()), read);
        }
        let verify = c.to_verify_cap();
        assert_eq!(
            verify.as_ref().map(Cap::expose),
            v.verify,
            "verify cap of {}",
            v.input
        );
        if let Some(verify) = verify {
            assert_eq!(verify.authority(), Authority::Verify);
            assert_eq!(verify.storage_index(), c.storage_index());
            assert_eq!(verify.is_directory(), c.is_directory());
            assert_eq!(verify.format(), c.format());
            assert_eq!(cap(verify.expose()), verify);
            assert!(verify.to_read_cap().is_none());
        }
        // canonical text parses back to an equal cap
        assert_eq!(cap(v.canonical), c);
        assert_eq!(c.is_literal(), v.si.is_none());
        assert_eq!(c.is_directory(), v.canonical.starts_with("URI:DIR2"));
    }
}

#[test]
fn vectors_cover_every_kind() {
    let seen: HashSet<CapKind> = VECTORS.iter().map(|v| kind_of_class(v.class)).collect();
    for k in CapKind::ALL {
        assert!(seen.contains(&k), "no Tahoe vector for {k}");
        assert_eq!(CapKind::from_tag(k.tag()), Some(k));
        assert_eq!(k.to_string(), k.tag());
        assert!(k.prefix().starts_with("URI:") && k.prefix().ends_with(':'));
    }
    assert_eq!(CapKind::from_tag("dir2"), None);
}

#[test]
fn redaction_never_shows_the_secret() {
    for v in VECTORS {
        let c = cap(v.input);
        let shown = [
            c.redacted(),
            format!("{c}"),
            format!("{c:?}"),
            format!("{:?}", Some(&c)),
        ];
        for s in &shown {
            assert!(
                s.starts_with(c.kind().prefix()) || s.contains(c.kind().prefix()),
                "{s}"
            );
            if c.authority() != Authority::Verify {
                // the key / literal data; a verify cap's first field is the public SI
                assert_no_leak(s, secret_part(v.canonical).split(':').next().unwrap());
            }
            // the fingerprint / UEB hash is never shown either
            if let Some(second) = secret_part(v.canonical).split(':').nth(1) {
                assert_no_leak(s, second);
            }
        }
        assert_no_leak(&redact(v.input), secret_part(v.input));
    }
}

#[test]
fn redacted_format() {
    assert_eq!(
        cap(DIR2_RO).redacted(),
        "URI:DIR2-RO:r2sy…[si=ma6zqcta4clwzyubalsjarmwwy]"
    );
    assert_eq!(
        cap(CHK).redacted(),
        "URI:CHK:aaaq…[si=hdis5iaveku6lnlaiccydyid7q]"
    );
    assert_eq!(cap(LIT).redacted(), "URI:LIT:…[11 bytes]");
    assert_eq!(cap("URI:DIR2-LIT:").redacted(), "URI:DIR2-LIT:…[0 bytes]");
    assert_eq!(
        format!("{:?}", cap(SSK)),
        "Cap(URI:SSK:ibau…[si=ma6zqcta4clwzyubalsjarmwwy])"
    );
}

#[test]
fn tahoe_rejects_are_rejected_without_leaking() {
    for input in TAHOE_REJECTS {
        let err = Cap::parse(input).expect_err(input);
        let msg = err.to_string();
        let dbg = format!("{err:?}");
        if input.len() > 12 {
            assert!(!msg.contains(input), "{msg}");
            assert!(!dbg.contains(input), "{dbg}");
        }
        assert_no_leak(&msg, secret_part(input));
        assert_no_leak(&dbg, secret_part(input));
    }
}

#[test]
fn error_kinds_and_messages() {
    let e = Cap::parse("   ").unwrap_err();
    assert_eq!(e, CapError::Empty);
    assert!(e.to_string().contains("empty cap"));

    let e = Cap::parse("hello there, not a cap").unwrap_err();
    assert!(matches!(e, CapError::NotACap { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("not a Tahoe-LAFS cap: hello there,…: expected"),
        "{msg}"
    );
    assert!(msg.contains("URI:CHK:") && msg.contains("URI:DIR2:"));

    let e = Cap::parse("URI:FOO:abcdefghijklmnop").unwrap_err();
    assert_eq!(
        e,
        CapError::UnknownKind {
            kind: "FOO".into(),
            input: "URI:FOO:abcd…".into()
        }
    );
    assert!(
        e.to_string()
            .starts_with("unknown cap kind URI:FOO: in URI:FOO:abcd…"),
        "{e}"
    );

    // missing kind: the key must not be echoed as a "kind"
    let e = Cap::parse(&SSK.replace("URI:SSK:", "URI:")).unwrap_err();
    match &e {
        CapError::UnknownKind { kind, input } => {
            assert_eq!(kind, "ibau…");
            assert_eq!(input, "URI:ibau…");
        }
        other => panic!("{other:?}"),
    }

    // bad base32: uppercase
    let upper = format!("URI:CHK:{}", secret_part(CHK).to_uppercase());
    let e = Cap::parse(&upper).unwrap_err();
    assert!(
        matches!(
            e,
            CapError::BadBase32 {
                field: "key",
                problem: base32::DecodeError::InvalidChar { position: 0 },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("bad base32 in key field of URI:CHK: cap URI:CHK:AAAQ…"),
        "{e}"
    );

    // non-canonical padding bits in the writekey
    let e = Cap::parse(&SSK.replace("oj4:", "ojb:")).unwrap_err();
    assert!(
        matches!(
            e,
            CapError::BadBase32 {
                field: "writekey",
                problem: base32::DecodeError::NonCanonical,
                ..
            }
        ),
        "{e:?}"
    );

    // truncated fingerprint
    let e = Cap::parse(&SSK[..SSK.len() - 2]).unwrap_err();
    assert_eq!(
        e,
        CapError::WrongLength {
            kind: CapKind::Ssk,
            field: "fingerprint",
            input: "URI:SSK:ibau…".into(),
            found: 50,
            expected: 52
        }
    );
    assert!(
        e.to_string()
            .starts_with("wrong key length in fingerprint field"),
        "{e}"
    );

    // truncated: a field missing
    let e = Cap::parse(&DIR2_RO[..37]).unwrap_err();
    assert!(
        matches!(
            e,
            CapError::Malformed {
                kind: CapKind::Dir2Ro,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("expected 2 ':'-separated fields"),
        "{e}"
    );

    // extra field on CHK
    let e = Cap::parse(&format!("{CHK}:1")).unwrap_err();
    assert!(
        matches!(
            e,
            CapError::Malformed {
                kind: CapKind::Chk,
                ..
            }
        ),
        "{e:?}"
    );

    // nothing after the kind
    let e = Cap::parse("URI:CHK").unwrap_err();
    assert!(
        matches!(
            e,
            CapError::Malformed {
                kind: CapKind::Chk,
                ..
            }
        ),
        "{e:?}"
    );

    // bad numbers
    let with_nums = |nums: &str| format!("{}:{nums}", CHK.rsplitn(4, ':').last().unwrap());
    assert_eq!(cap(&with_nums("3:10:123456")), cap(CHK));
    for (nums, field) in [
        ("3:10:12345x", "size"),
        ("+3:10:1", "needed-shares"),
        ("3:70000:1", "total-shares"),
        ("3:10:18446744073709551616", "size"),
        ("3::1", "total-shares"),
    ] {
        let e = Cap::parse(&with_nums(nums)).unwrap_err();
        assert!(
            matches!(e, CapError::BadNumber { field: f, .. } if f == field),
            "{nums}: {e:?}"
        );
    }
    assert_eq!(
        cap(&with_nums("3:10:18446744073709551615")).size(),
        Some(u64::MAX)
    );

    // LIT with an impossible length
    let e = Cap::parse("URI:LIT:abc").unwrap_err();
    assert!(
        matches!(
            e,
            CapError::BadBase32 {
                field: "data",
                problem: base32::DecodeError::InvalidLength { len: 3 },
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(redact("URI:LIT:abc"), "URI:LIT:…");
}

#[test]
fn prefix_constraints_follow_tahoe() {
    // accepted and canonicalised (prefix dropped)
    assert_eq!(cap(&format!("ro.{SSK_RO}")), cap(SSK_RO));
    assert_eq!(cap(&format!("ro.{CHK}")), cap(CHK));
    assert_eq!(cap(&format!("imm.{CHK}")), cap(CHK));
    assert_eq!(cap(&format!("imm.{LIT}")), cap(LIT));
    assert_eq!(cap(&format!("imm.{DIR2_V}")).kind(), CapKind::Dir2Verifier);
    assert_eq!(cap(&format!("ro.{DIR2_V}")).kind(), CapKind::Dir2Verifier);
    // rejected
    let e = Cap::parse(&format!("ro.{DIR2}")).unwrap_err();
    assert!(
        matches!(
            e,
            CapError::PrefixConstraint {
                prefix: "ro.",
                kind: CapKind::Dir2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("ro.URI:DIR2:ibau…"), "{e}");
    let e = Cap::parse(&format!("imm.{DIR2_RO}")).unwrap_err();
    assert!(
        matches!(e, CapError::PrefixConstraint { prefix: "imm.", .. }),
        "{e:?}"
    );
    let e = Cap::parse(&format!("imm.{DIR2_MDMF}")).unwrap_err();
    assert!(
        matches!(e, CapError::PrefixConstraint { prefix: "imm.", .. }),
        "{e:?}"
    );
    // only one prefix
    let e = Cap::parse(&format!("ro.ro.{SSK_RO}")).unwrap_err();
    assert!(matches!(e, CapError::NotACap { .. }), "{e:?}");
}

#[test]
fn whitespace_and_dedup() {
    let a = cap(&format!("  {DIR2}\n"));
    let b = cap(DIR2);
    let c = cap(&format!("{DIR2_MDMF}:3:131073"));
    let d = cap(DIR2_MDMF);
    assert_eq!(a, b);
    assert_eq!(c, d);
    let set: HashSet<Cap> = [a, b, c, d].into_iter().collect();
    assert_eq!(set.len(), 2);
    let parsed: Cap = DIR2.parse().unwrap();
    assert_eq!(parsed.expose(), DIR2);
    // internal whitespace is not trimmed
    assert!(Cap::parse(&DIR2.replace(":mbq", ": mbq")).is_err());
}

#[test]
fn numbers_are_written_canonically_at_both_ends_of_their_range() {
    let key = "a".repeat(26);
    let ueb = "a".repeat(52);
    for (given, canonical) in [
        ("0:1:0", "0:1:0"),
        ("002:05:0100", "2:5:100"),
        (
            "255:256:18446744073709551615",
            "255:256:18446744073709551615",
        ),
    ] {
        let c = cap(&format!("URI:CHK:{key}:{ueb}:{given}"));
        assert_eq!(c.expose(), format!("URI:CHK:{key}:{ueb}:{canonical}"));
        let v = c.to_verify_cap().unwrap();
        assert!(
            v.expose().ends_with(&format!(":{canonical}")),
            "{}",
            v.expose()
        );
        assert_eq!(cap(v.expose()), v);
    }
}

#[test]
fn field_accessors() {
    let c = cap(CHK);
    assert_eq!(c.format(), Format::Chk);
    assert_eq!(c.size(), Some(123456));
    assert_eq!(c.encoding(), Some((3, 10)));
    let ueb: Vec<u8> = (0x20u8..0x40).collect();
    assert_eq!(c.uri_extension_hash().unwrap().to_vec(), ueb);
    assert_eq!(c.fingerprint(), None);
    let v = c.to_verify_cap().unwrap();
    assert_eq!((v.size(), v.encoding()), (Some(123456), Some((3, 10))));

    let l = cap(LIT);
    assert_eq!(
        (l.size(), l.encoding(), l.fingerprint()),
        (Some(11), None, None)
    );
    assert_eq!(l.literal_data(), Some(&b"hello world"[..]));
    assert_eq!(l.storage_index(), None);
    assert!(l.is_literal() && !l.is_mutable() && !l.is_directory());
    assert_eq!(cap("URI:DIR2-LIT:").size(), Some(0));

    let fp: Vec<u8> = (0x60u8..0x80).collect();
    for s in [SSK, SSK_RO, DIR2, DIR2_RO, DIR2_V] {
        let c = cap(s);
        assert_eq!(c.fingerprint().unwrap().to_vec(), fp, "{s}");
        assert_eq!((c.size(), c.encoding()), (None, None));
        assert_eq!(c.format(), Format::Sdmf);
        assert!(c.is_mutable());
    }
    let fp2: Vec<u8> = (0xa0u8..0xc0).collect();
    let m = cap(DIR2_MDMF);
    assert_eq!(m.fingerprint().unwrap().to_vec(), fp2);
    assert_eq!(m.format(), Format::Mdmf);
    assert!(m.is_directory() && m.is_mutable() && !m.is_literal());
    assert_eq!(Format::Sdmf.to_string(), "SDMF");
    assert_eq!(Format::Chk.to_string(), "CHK");
    assert_eq!(Format::Lit.to_string(), "LIT");
    assert_eq!(Format::Mdmf.to_string(), "MDMF");
}

#[test]
fn authority_and_weakening() {
    assert!(Authority::Verify < Authority::Read && Authority::Read < Authority::Write);
    let w = cap(DIR2);
    assert_eq!(w.authority(), Authority::Write);
    assert_eq!(w.weaken_to(Authority::Write), Some(w.clone()));
    assert_eq!(w.weaken_to(Authority::Read).unwrap().expose(), DIR2_RO);
    assert_eq!(w.weaken_to(Authority::Verify).unwrap().expose(), DIR2_V);

    let r = cap(DIR2_RO);
    assert_eq!(r.weaken_to(Authority::Write), Some(r.clone()));
    let v = cap(DIR2_V);
    assert_eq!(v.weaken_to(Authority::Read), Some(v.clone()));
    assert_eq!(v.to_read_cap(), None);

    let l = cap(LIT);
    assert_eq!(l.authority(), Authority::Read);
    assert_eq!(l.weaken_to(Authority::Write), Some(l.clone()));
    assert_eq!(l.weaken_to(Authority::Verify), None);
    assert_eq!(l.to_read_cap(), Some(l.clone()));
    assert_eq!(cap(CHK).authority(), Authority::Read);

    // require(): exact authority or an explanatory, redacted error
    assert_eq!(w.require(Authority::Read).unwrap().expose(), DIR2_RO);
    let e = v.require(Authority::Read).unwrap_err();
    assert_eq!(
        e,
        CapError::InsufficientAuthority {
            input: v.redacted(),
            have: Authority::Verify,
            want: Authority::Read
        }
    );
    assert!(
        e.to_string()
            .contains("is a verify cap but read authority is needed"),
        "{e}"
    );
    assert_no_leak(
        &e.to_string(),
        secret_part(DIR2_V).split(':').nth(1).unwrap(),
    );
    let e = cap(CHK).require(Authority::Write).unwrap_err();
    assert!(matches!(
        e,
        CapError::InsufficientAuthority {
            have: Authority::Read,
            ..
        }
    ));
    let e = l.require(Authority::Verify).unwrap_err();
    assert!(matches!(e, CapError::Literal { .. }), "{e:?}");
    assert!(!e.to_string().contains("nbswy"), "{e}");
}

#[test]
fn filenode_cap_unwraps_directories() {
    assert_eq!(cap(DIR2).filenode_cap().expose(), SSK);
    assert_eq!(cap(DIR2_RO).filenode_cap().expose(), SSK_RO);
    assert_eq!(cap("URI:DIR2-LIT:").filenode_cap().expose(), "URI:LIT:");
    assert_eq!(
        cap(&CHK.replace("URI:CHK:", "URI:DIR2-CHK:")).filenode_cap(),
        cap(CHK)
    );
    assert_eq!(cap(SSK).filenode_cap(), cap(SSK));
    for k in CapKind::ALL {
        let f = k.filenode_kind();
        assert!(!f.is_directory());
        assert_eq!(f.authority(), k.authority());
        assert_eq!(f.format(), k.format());
    }
}

#[test]
fn redact_free_function() {
    assert_eq!(redact(DIR2), "URI:DIR2:ibau…");
    assert_eq!(redact(&format!(" ro.{SSK_RO} ")), "ro.URI:SSK-RO:r2sy…");
    assert_eq!(redact(LIT), "URI:LIT:…");
    assert_eq!(redact("URI:DIR2-LIT:mfrggzdf"), "URI:DIR2-LIT:…");
    assert_eq!(redact("URI:CHK:ab"), "URI:CHK:ab");
    assert_eq!(redact("URI:NEWKIND:secretsecret"), "URI:NEWKIND:secr…");
    assert_eq!(redact("URI:aaaqeayeaudaocajbifqydiob4:x"), "URI:aaaq…");
    assert_eq!(redact("short"), "short");
    assert_eq!(redact("aaaqeayeaudaocajbifqydiob4"), "aaaqeayeauda…");
    assert_eq!(redact("a\nb"), "a\\nb");
    assert_eq!(redact(""), "");
}

#[test]
fn storage_index_text() {
    let si: StorageIndex = "hdis5iaveku6lnlaiccydyid7q".parse().unwrap();
    assert_eq!(si.to_string(), "hdis5iaveku6lnlaiccydyid7q");
    assert_eq!(Some(si), cap(CHK).storage_index());
    assert_eq!(
        si.0.to_vec(),
        hash::storage_index_hash(&(0u8..16).collect::<Vec<_>>()).to_vec()
    );
    assert_eq!(
        format!("{si:?}"),
        "StorageIndex(hdis5iaveku6lnlaiccydyid7q)"
    );
    assert!(matches!(
        "hdis5iaveku6lnlaiccydyid7".parse::<StorageIndex>(),
        Err(StorageIndexError::Length(25))
    ));
    assert!(matches!(
        "HDIS5IAVEKU6LNLAICCYDYID7Q".parse::<StorageIndex>(),
        Err(StorageIndexError::Base32(_))
    ));
    assert!(matches!(
        "hdis5iaveku6lnlaiccydyid7r".parse::<StorageIndex>(),
        Err(StorageIndexError::Base32(base32::DecodeError::NonCanonical))
    ));
    let mut sis: Vec<StorageIndex> = VECTORS
        .iter()
        .filter_map(|v| cap(v.input).storage_index())
        .collect();
    sis.sort();
    sis.dedup();
    assert_eq!(sis.len(), 4, "CHK, CHK(key2), SSK and MDMF objects");
}

#[test]
fn caps_in_text_are_redacted_plain_and_escaped() {
    let cap =
        "URI:CHK:abcdefghijklmnopqrstuvwxyz:abcdefghijklmnopqrstuvwxyz234567abcdefghijkl:2:5:100";
    let t = crate::redact_caps(&format!("No such child: {cap}, sorry"));
    assert!(!t.contains("abcdefghijklmnop"), "{t}");
    assert!(
        t.starts_with("No such child: URI:CHK:abcd") && t.ends_with(", sorry"),
        "{t}"
    );
    let path = format!("/uri/{}?t=json", cap.replace(':', "%3A"));
    let t = crate::redact_caps(&path);
    assert!(!t.contains("abcdefghijklmnop"), "{t}");
    assert!(t.ends_with("?t=json"), "{t}");
    let t = crate::redact_caps(&path.to_lowercase().replace("uri%3a", "URI%3a"));
    assert!(!t.contains("abcdefghijklmnop"), "{t}");
    assert_eq!(crate::redact_caps("no caps here"), "no caps here");
}

#[test]
fn key_accessors_give_the_keys_only_to_caps_that_hold_them() {
    let chk = Cap::parse(VECTORS[0].input).unwrap();
    let key: Vec<u8> = (0u8..16).collect();
    assert_eq!(chk.encryption_key().unwrap().to_vec(), key);
    let chk_dir = Cap::parse(&VECTORS[0].input.replace("URI:CHK:", "URI:DIR2-CHK:")).unwrap();
    assert_eq!(chk_dir.encryption_key().unwrap().to_vec(), key);
    assert_eq!(chk.to_verify_cap().unwrap().encryption_key(), None);
    assert_eq!(chk.writekey(), None);

    let ssk = Cap::parse(VECTORS[8].input).unwrap();
    let wk: Vec<u8> = (0x40u8..0x50).collect();
    assert_eq!(ssk.writekey().unwrap().to_vec(), wk);
    assert_eq!(ssk.readkey().unwrap(), hash::ssk_readkey_hash(&wk));
    let ro = ssk.to_read_cap().unwrap();
    assert_eq!(ro.writekey(), None);
    assert_eq!(ro.readkey(), ssk.readkey());
    let v = ssk.to_verify_cap().unwrap();
    assert_eq!(
        (v.readkey(), v.writekey(), v.encryption_key()),
        (None, None, None)
    );
}
