//! Take-overs of a channel that its subscribers keep alive after its
//! publisher has gone (Windows, where a section lives while any process
//! holds it): a new publisher that asks for another security descriptor,
//! or that the old one refuses write access, is told so, instead of
//! silently publishing under the old descriptor or hearing "permission
//! denied" about an object it never heard of (the Wine attack's findings F
//! and G). Runs under Wine.

#![cfg(windows)]

mod common;

use common::unique;
use shmcast::{ChannelOptions, CreateOptions, ErrorKind, Publisher, Subscriber};

fn with_sddl(sddl: Option<&str>) -> ChannelOptions {
    let mut create = CreateOptions::new();
    if let Some(sddl) = sddl {
        create = create.sddl(sddl);
    }
    ChannelOptions::new(64).create_options(create)
}

#[test]
fn a_take_over_asking_for_another_descriptor_is_refused_naming_both() {
    let name = unique("sddl-take");
    let first = Publisher::create_with(&name, &with_sddl(Some("D:(A;;GA;;;WD)"))).unwrap();
    let subscriber = Subscriber::open(&name).unwrap();
    drop(first);
    for other in [Some("D:(A;;GRGX;;;WD)"), None] {
        let e = Publisher::create_with(&name, &with_sddl(other)).unwrap_err();
        let said = e.to_string();
        assert_eq!(e.kind(), ErrorKind::Incompatible, "{said}");
        assert!(said.contains("\"D:(A;;GA;;;WD)\""), "{said}");
        match other {
            Some(asked) => assert!(said.contains(asked), "{said}"),
            None => assert!(said.contains("not the default"), "{said}"),
        }
        assert!(said.contains("subscribers still hold it open"), "{said}");
    }
    // The descriptor it was made with takes it over, subscriber and all.
    let mut again = Publisher::create_with(&name, &with_sddl(Some("D:(A;;GA;;;WD)"))).unwrap();
    again.publish(&shmcast::FrameMeta::raw(), &[5; 64]).unwrap();
    let (_, bytes) = subscriber.read_latest_vec().unwrap().unwrap();
    assert_eq!(bytes, vec![5; 64]);
}

#[test]
fn a_take_over_the_old_descriptor_denies_says_why() {
    let name = unique("sddl-deny");
    // Everyone (its creator too) may read and wait, nobody may write: the
    // creator writes through the handle it created it with.
    let sddl = Some("D:(A;;GRGX;;;WD)");
    let first = Publisher::create_with(&name, &with_sddl(sddl)).unwrap();
    let subscriber = Subscriber::open(&name).unwrap();
    drop(first);
    let e = Publisher::create_with(&name, &with_sddl(sddl)).unwrap_err();
    let said = e.to_string();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{said}");
    assert!(
        said.contains(
            "the existing channel, kept alive by its subscribers, grants this user no write access"
        ),
        "{said}"
    );
    drop(subscriber);
}
