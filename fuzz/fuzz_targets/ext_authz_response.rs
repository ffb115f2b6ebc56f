//! The authorization service's answer (status, headers, body) as the `ext_authz` client reads
//! it, the decision cache's `Cache-Control` reading, and the header value templates.

#![no_main]

use arbitrary::Arbitrary;
use inline_authz::ext_authz::cache::{max_age, MAX_AGE_CAP};
use inline_authz::ext_authz::TemplateSource;
use inline_authz::ext_authz::{
    interpret, CallResponse, CheckResponse, ErrorKind, HeaderValueTemplate, HttpService,
};
use inline_authz::headers::{is_protected, HeaderMutation};
use inline_authz::policy::matcher::HeaderNames;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    deny_list: bool,
    template: String,
}

struct Request<'a>(&'a [(String, String)]);

impl TemplateSource for Request<'_> {
    fn request_header(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    fn remote_address(&self) -> Option<String> {
        self.0.first().map(|(_, v)| v.clone())
    }
}

fn provider(deny_list: bool) -> HttpService {
    HttpService {
        path_prefix: String::new(),
        request_headers: HeaderNames::default(),
        additional_headers: vec![],
        upstream_on_allow: HeaderNames::new(&["x-*", "authorization", ":path", "host"]),
        downstream_on_allow: HeaderNames::new(&["set-cookie"]),
        downstream_on_deny: deny_list.then(|| HeaderNames::new(&["x-reason"])),
    }
}

fuzz_target!(|input: Input| {
    let response = CallResponse {
        headers: input
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect(),
        body: input.body,
    };
    let status = response.status();
    match interpret(&provider(input.deny_list), Some(&response)) {
        CheckResponse::Ok { upstream, .. } => {
            assert_eq!(status, Some(200));
            for mutation in &upstream {
                assert!(!is_protected(mutation.name()), "{mutation:?}");
                if let HeaderMutation::Set { name, .. } = mutation {
                    assert!(!name.starts_with(':'), "{mutation:?}");
                }
            }
        }
        CheckResponse::Denied {
            status: s, headers, ..
        } => {
            assert_eq!(status, Some(s));
            assert!(s != 200 && (200..500).contains(&s));
            assert!(headers.iter().all(|(n, _)| !n.starts_with(':')));
        }
        CheckResponse::Error(ErrorKind::BadStatus(s)) => assert_eq!(status, Some(s)),
        CheckResponse::Error(kind) => {
            assert_eq!(status, None, "{kind:?}");
        }
    }
    if let Some(age) = max_age(&response) {
        assert!(age > 0 && age <= MAX_AGE_CAP);
    }

    if let Ok(template) = HeaderValueTemplate::parse(&input.template) {
        let rendered = template.render(&Request(&input.headers));
        if template.is_literal() {
            assert_eq!(rendered, template.render(&Request(&[])));
        }
    }
});
