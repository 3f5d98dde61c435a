//! Tests of the local rasn patch that keeps PER extension additions (and
//! CHOICE extension alternatives) a type does not know, so that a message
//! from a newer peer re-encodes to the same bytes. `Old*` types are what this
//! proxy knows; `New*` types stand for a later version of the same ASN.1.

#![allow(non_camel_case_types)]

use rasn::prelude::*;
use rasn::types::{UnknownChoiceExtension, UnknownExtensions};

#[derive(AsnType, Debug, Clone, Decode, Encode, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
struct Old {
    a: bool,
    n: Option<u8>,
    #[rasn(extension_addition)]
    b: Option<bool>,
    #[rasn(unknown_extensions)]
    rest: UnknownExtensions,
}

#[derive(AsnType, Debug, Clone, Decode, Encode, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
struct New {
    a: bool,
    n: Option<u8>,
    #[rasn(extension_addition)]
    b: Option<bool>,
    #[rasn(extension_addition)]
    c: Option<Ia5String>,
    #[rasn(extension_addition)]
    d: Option<Integer>,
}

/// `New`, with a place for what it does not know.
#[derive(AsnType, Debug, Clone, Decode, Encode, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
struct NewKeep {
    a: bool,
    n: Option<u8>,
    #[rasn(extension_addition)]
    b: Option<bool>,
    #[rasn(extension_addition)]
    c: Option<Ia5String>,
    #[rasn(extension_addition)]
    d: Option<Integer>,
    #[rasn(unknown_extensions)]
    rest: UnknownExtensions,
}

/// An extensible SEQUENCE whose type knows no additions at all.
#[derive(AsnType, Debug, Clone, Decode, Encode, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
struct Bare {
    a: bool,
    n: Option<u8>,
    #[rasn(unknown_extensions)]
    rest: UnknownExtensions,
}

#[derive(AsnType, Debug, Clone, Decode, Encode, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
struct OuterOld {
    inner: Old,
    #[rasn(extension_addition)]
    late: Option<Old>,
    #[rasn(unknown_extensions)]
    rest: UnknownExtensions,
}

#[derive(AsnType, Debug, Clone, Decode, Encode, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
struct OuterNew {
    inner: New,
    #[rasn(extension_addition)]
    late: Option<New>,
    #[rasn(extension_addition)]
    later: Option<bool>,
}

#[derive(AsnType, Debug, Clone, Decode, Encode, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
enum ChoiceOld {
    x(bool),
    y(Old),
    #[rasn(extension_addition)]
    z(u8),
    #[rasn(unknown_extension)]
    Unknown(UnknownChoiceExtension),
}

#[derive(AsnType, Debug, Clone, Decode, Encode, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
enum ChoiceNew {
    x(bool),
    y(New),
    #[rasn(extension_addition)]
    z(u8),
    #[rasn(extension_addition)]
    w(Ia5String),
    #[rasn(extension_addition)]
    v(New),
}

fn new_value() -> New {
    New {
        a: true,
        n: Some(7),
        b: Some(false),
        c: Some(Ia5String::try_from("gk-2.example").unwrap()),
        d: Some(Integer::from(-300)),
    }
}

/// Decode `bytes` as `T`, re-encode, and require the same bytes.
fn same_bytes<T: Decode + Encode + core::fmt::Debug>(bytes: &[u8]) -> T {
    let value: T = rasn::aper::decode(bytes).unwrap();
    assert_eq!(rasn::aper::encode(&value).unwrap(), bytes, "{value:?}");
    value
}

#[test]
fn additions_from_a_newer_peer_are_kept_and_re_encoded_identically() {
    let bytes = rasn::aper::encode(&new_value()).unwrap();
    let old: Old = same_bytes(&bytes);
    assert_eq!(old.b, Some(false));
    let positions: Vec<usize> = old.rest.additions().iter().map(|(i, _)| *i).collect();
    assert_eq!(positions, [1, 2]);
    assert_eq!(old.rest.bitmap_len(), Some(3));
    // The same bytes still decode as the newer type.
    assert_eq!(rasn::aper::decode::<New>(&bytes).unwrap(), new_value());
    // Only unknown additions, no known one present.
    let only_new = New {
        b: None,
        ..new_value()
    };
    let old: Old = same_bytes(&rasn::aper::encode(&only_new).unwrap());
    assert_eq!(old.b, None);
    // A type that knows no additions at all.
    let bare: Bare = same_bytes(&rasn::aper::encode(&new_value()).unwrap());
    assert_eq!(bare.rest.additions().len(), 3);
}

#[test]
fn a_shorter_bitmap_from_an_older_peer_is_kept() {
    // An older peer's encoding only knows `b` (a one-bit bitmap): the type
    // that knows three additions keeps the shorter length.
    let old = Old {
        a: false,
        n: None,
        b: Some(true),
        rest: UnknownExtensions::default(),
    };
    let bytes = rasn::aper::encode(&old).unwrap();
    let new: NewKeep = same_bytes(&bytes);
    assert_eq!(new.b, Some(true));
    assert_eq!(new.c, None);
    assert_eq!(new.rest.bitmap_len(), Some(1));
    // Without a place for it the canonical three-bit bitmap is written.
    let canonical: New = rasn::aper::decode(&bytes).unwrap();
    assert_ne!(rasn::aper::encode(&canonical).unwrap(), bytes);
    // Nothing present: the extension bit stays 0 and nothing is recorded.
    let plain = Old { b: None, ..old };
    let decoded: Old = same_bytes(&rasn::aper::encode(&plain).unwrap());
    assert_eq!(decoded.rest, UnknownExtensions::default());
}

#[test]
fn unknown_additions_inside_nested_and_extension_values_are_kept() {
    let outer = OuterNew {
        inner: new_value(),
        late: Some(New {
            d: None,
            ..new_value()
        }),
        later: Some(true),
    };
    let bytes = rasn::aper::encode(&outer).unwrap();
    let old: OuterOld = same_bytes(&bytes);
    assert_eq!(old.inner.rest.additions().len(), 2);
    assert_eq!(old.late.as_ref().unwrap().rest.additions().len(), 1);
    assert_eq!(old.rest.additions().len(), 1);
    // SEQUENCE OF a type with unknown additions.
    let list = vec![
        new_value(),
        New {
            c: None,
            ..new_value()
        },
    ];
    let bytes = rasn::aper::encode(&list).unwrap();
    same_bytes::<Vec<Old>>(&bytes);
}

#[test]
fn an_unknown_choice_alternative_is_kept() {
    for value in [
        ChoiceNew::w(Ia5String::try_from("alt").unwrap()),
        ChoiceNew::v(new_value()),
    ] {
        let bytes = rasn::aper::encode(&value).unwrap();
        let old: ChoiceOld = same_bytes(&bytes);
        assert!(matches!(old, ChoiceOld::Unknown(_)), "{old:?}");
    }
    // Known alternatives still decode to themselves, nested unknowns kept.
    let bytes = rasn::aper::encode(&ChoiceNew::y(new_value())).unwrap();
    let old: ChoiceOld = same_bytes(&bytes);
    assert!(matches!(&old, ChoiceOld::y(o) if o.rest.additions().len() == 2));
    let bytes = rasn::aper::encode(&ChoiceNew::z(9)).unwrap();
    assert_eq!(same_bytes::<ChoiceOld>(&bytes), ChoiceOld::z(9));
}

#[test]
fn misuse_is_an_error_not_wrong_bytes() {
    // A hand-built value whose "unknown" position clashes with a known one.
    let bad = Old {
        a: true,
        n: None,
        b: None,
        rest: UnknownExtensions::new(None, vec![(0, vec![0x80])]),
    };
    assert!(rasn::aper::encode(&bad).is_err());
    // JSON (JER) has no place for unknown additions: they are left out and
    // the known fields are unchanged.
    let old: Old = rasn::aper::decode(&rasn::aper::encode(&new_value()).unwrap()).unwrap();
    let json = rasn::jer::encode(&old).unwrap();
    assert!(!json.contains("rest"), "{json}");
    assert!(json.contains("\"b\":false"), "{json}");
    // Only PER can re-encode an unknown CHOICE alternative.
    let unknown: ChoiceOld = rasn::aper::decode(
        &rasn::aper::encode(&ChoiceNew::w(Ia5String::try_from("x").unwrap())).unwrap(),
    )
    .unwrap();
    assert!(rasn::ber::encode(&unknown).is_err());
    // JER shows it under a name no ASN.1 identifier can have clashed with.
    let json = rasn::jer::encode(&unknown).unwrap();
    assert_eq!(json, r#"{"unknownExtension":{"data":"0178","index":1}}"#);
}
