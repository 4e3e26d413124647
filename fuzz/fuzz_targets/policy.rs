//! Risk rules, orders and message templates from configuration files and
//! order systems, plus the phone numbers and e-mail addresses the courier
//! sees masked. The first byte picks what the rest is read as. Everything
//! either reads or gets a typed error; what reads decides, renders or masks
//! without panicking, and never puts the code in an error.
#![no_main]

use delivery_otp::{
    mask_email, mask_phone, CustomerPreference, DeliveryMethod, MessageValues, Order, Rules,
    Templates,
};
use libfuzzer_sys::fuzz_target;

const CODE: &str = "48213579";

fn orders() -> Vec<Order> {
    let mut out = Vec::new();
    for (value_minor, currency) in [
        (1_250, "GBP"),
        (14_999, "EUR"),
        (i64::MAX, "INR"),
        (-1, "GBP"),
        (0, "XXX"),
    ] {
        for method in [
            DeliveryMethod::HandToCustomer,
            DeliveryMethod::SafePlace,
            DeliveryMethod::Neighbour,
        ] {
            out.push(Order {
                value_minor,
                currency: currency.into(),
                method,
                categories: vec!["alcohol".into(), "electronics".into()],
                region_risk: 100,
                customer_preference: Some(CustomerPreference::Never),
                first_delivery_to_address: true,
                not_received_claims: i32::MAX,
            });
        }
    }
    out
}

fn values() -> MessageValues {
    MessageValues {
        sender: "Acme".into(),
        delivery_id: "PKG-1001".into(),
        code: CODE.into(),
        expires_at: delivery_otp::UnixTime::from_secs(1_764_000_000),
        utc_offset_minutes: 60,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match pick % 4 {
        0 => {
            if let Ok(rules) = Rules::from_json(&text) {
                let back = Rules::from_json(&rules.to_json()).expect("our own rules read back");
                assert_eq!(back.to_json(), rules.to_json());
                for order in orders() {
                    let _ = rules.decide(&order);
                }
            }
        }
        1 => {
            if let Ok(order) = Order::from_json(&text) {
                let _ = Rules::defaults().decide(&order);
            }
        }
        2 => {
            if let Ok(templates) = Templates::from_json(&text) {
                for locale in ["en", "de-AT", "fr"] {
                    if let Ok(sms) = templates.render_sms(locale, &values()) {
                        assert!(sms.text.contains("4821"), "an SMS carries the code");
                    }
                    if let Err(e) = templates.render_email(locale, &values()) {
                        assert!(!e.to_string().contains(CODE));
                    }
                }
            }
        }
        _ => {
            // A mask shows the courier the last four digits (and the country
            // code) of a phone, and one letter of each part of an e-mail
            // address; never more. Errors are fixed sentences (the no-leak
            // test checks that they never repeat the contact).
            if let Ok(m) = mask_phone(&text) {
                let shown = m.chars().filter(char::is_ascii_digit).count();
                assert!(shown <= 3 + 4, "{m}");
            }
            if let Ok(m) = mask_email(&text) {
                let (local, domain) = m.split_once('@').expect("a masked address keeps its '@'");
                assert!(local.chars().filter(|c| *c != '•').count() <= 1, "{m}");
                let first_label = domain.split('.').next().unwrap_or("");
                assert!(
                    first_label.chars().filter(|c| *c != '•').count() <= 1,
                    "{m}"
                );
            }
        }
    }
});
