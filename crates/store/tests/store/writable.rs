//! The writability probe behind the server's readiness check.

use crate::common::{entries_in, Fixture};

#[tokio::test]
async fn check_writable_leaves_nothing_behind_and_fails_when_the_temp_dir_cannot_take_files() {
    let f = Fixture::new().await;
    f.store.check_writable().await.unwrap();
    assert_eq!(entries_in(&f.tmp_dir()), 0, "the probe file was not removed");

    // Tests run as root, which permission bits do not stop: a file where the directory should be does.
    std::fs::remove_dir(f.tmp_dir()).unwrap();
    std::fs::write(f.tmp_dir(), b"in the way").unwrap();
    assert!(f.store.check_writable().await.is_err());

    std::fs::remove_file(f.tmp_dir()).unwrap();
    std::fs::create_dir(f.tmp_dir()).unwrap();
    f.store.check_writable().await.unwrap();
}
