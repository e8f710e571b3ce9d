//! Which (availability, activity) pairs each write accepts: a table of cases
//! per operation, all run through one helper.

use serde_json::json;

use crate::helpers::{Reply, TestServer};

/// The operations that take a pair.
#[derive(Clone, Copy, Debug)]
enum Operation {
    SetPresence,
    SetUserPreferredPresence,
    LegacyPut,
}

/// A pair, and whether the operation must accept it.
type Case = (&'static str, &'static str, bool);

const SET_PRESENCE_PAIRS: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

const PREFERRED_PAIRS: [(&str, &str); 6] = [
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];

const LEGACY_PAIRS: [(&str, &str); 4] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
];

/// The session every preferred-presence case starts from: preferred
/// presence shows only while a session exists, and this pair is none of the
/// preferred ones, so the effect is visible.
const BACKGROUND_SESSION: (&str, &str) = ("Busy", "InAConferenceCall");

impl Operation {
    fn supported(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Operation::SetPresence => &SET_PRESENCE_PAIRS,
            Operation::SetUserPreferredPresence => &PREFERRED_PAIRS,
            Operation::LegacyPut => &LEGACY_PAIRS,
        }
    }

    async fn submit(
        self,
        server: &TestServer,
        user: &str,
        availability: &str,
        activity: &str,
    ) -> Reply {
        let pair = json!({"availability": availability, "activity": activity});
        match self {
            Operation::SetPresence => {
                server
                    .set_presence(user, "app", availability, activity, Some("PT1H"))
                    .await
            }
            Operation::SetUserPreferredPresence => {
                server
                    .post(
                        &format!("/v1.0/users/{user}/presence/setUserPreferredPresence"),
                        pair,
                    )
                    .await
            }
            Operation::LegacyPut => {
                server
                    .put(&format!("/beta/users/{user}/presence/sessions/s1"), pair)
                    .await
            }
        }
    }

    /// What the user shows before the operation is tried.
    async fn prepare(self, server: &TestServer, user: &str) -> (String, String) {
        if let Operation::SetUserPreferredPresence = self {
            let (availability, activity) = BACKGROUND_SESSION;
            server
                .set_presence(user, "background", availability, activity, Some("PT1H"))
                .await
                .assert_ok_empty();
        }
        server.shown(user).await
    }
}

/// Tries every case on a fresh user: an accepted pair answers 200 with an
/// empty body and is shown as sent; a refused one is a 400 InvalidArgument
/// whose message names the pair and lists every supported one, and changes
/// nothing.
async fn check_pairs(operation: Operation, cases: &[Case]) {
    let server = TestServer::start(&[]).await;
    for (index, &(availability, activity, accepted)) in cases.iter().enumerate() {
        let user = format!("pairs-{index}");
        let before = operation.prepare(&server, &user).await;
        let reply = operation
            .submit(&server, &user, availability, activity)
            .await;
        let shown = server.shown(&user).await;
        let what = format!("{operation:?} {availability}/{activity}");
        if accepted {
            assert_eq!(
                reply.status, 200,
                "{what} should be accepted: {}",
                reply.text
            );
            reply.assert_ok_empty();
            assert_eq!(
                shown,
                (availability.to_owned(), activity.to_owned()),
                "{what} should be shown"
            );
        } else {
            assert_eq!(
                reply.status, 400,
                "{what} should be refused: {}",
                reply.text
            );
            let message = reply.assert_error(400, "InvalidArgument");
            assert!(
                message.contains(availability) && message.contains(activity),
                "{what}: the message names the pair: {message}"
            );
            for (supported_availability, supported_activity) in operation.supported() {
                let listed = format!("{supported_availability}/{supported_activity}");
                assert!(
                    message.contains(&listed),
                    "{what}: the message lists {listed}: {message}"
                );
            }
            assert_eq!(shown, before, "{what} was refused, so nothing changed");
        }
    }
}

#[tokio::test]
async fn set_presence_accepts_exactly_its_five_documented_pairs() {
    check_pairs(
        Operation::SetPresence,
        &[
            ("Available", "Available", true),
            ("Busy", "InACall", true),
            ("Busy", "InAConferenceCall", true),
            ("Away", "Away", true),
            ("DoNotDisturb", "Presenting", true),
            ("Busy", "Busy", false),
            ("DoNotDisturb", "DoNotDisturb", false),
            ("Offline", "OffWork", false),
            ("BeRightBack", "BeRightBack", false),
            ("Available", "Away", false),
            ("Available", "AvailableInactive", false),
            ("Busy", "InAMeeting", false),
            ("Offline", "Offline", false),
            ("PresenceUnknown", "PresenceUnknown", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn set_user_preferred_presence_accepts_exactly_its_six_documented_pairs_while_a_session_exists()
 {
    check_pairs(
        Operation::SetUserPreferredPresence,
        &[
            ("Available", "Available", true),
            ("Busy", "Busy", true),
            ("DoNotDisturb", "DoNotDisturb", true),
            ("BeRightBack", "BeRightBack", true),
            ("Away", "Away", true),
            ("Offline", "OffWork", true),
            ("Busy", "InACall", false),
            ("DoNotDisturb", "Presenting", false),
            ("Offline", "Offline", false),
            ("Available", "AvailableInactive", false),
            ("Away", "BeRightBack", false),
            ("PresenceUnknown", "PresenceUnknown", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_legacy_put_accepts_exactly_the_first_four_set_presence_pairs() {
    check_pairs(
        Operation::LegacyPut,
        &[
            ("Available", "Available", true),
            ("Busy", "InACall", true),
            ("Busy", "InAConferenceCall", true),
            ("Away", "Away", true),
            ("DoNotDisturb", "Presenting", false),
            ("Busy", "Busy", false),
            ("DoNotDisturb", "DoNotDisturb", false),
            ("Offline", "OffWork", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_legacy_put_refusal_does_not_offer_do_not_disturb_presenting() {
    let server = TestServer::start(&[]).await;
    let message = Operation::LegacyPut
        .submit(&server, "u1", "DoNotDisturb", "Presenting")
        .await
        .assert_error(400, "InvalidArgument");
    assert!(
        !message.contains("DoNotDisturb/Presenting"),
        "the legacy PUT does not take DoNotDisturb/Presenting, so it must not offer it: {message}"
    );
}
