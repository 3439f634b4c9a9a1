//! Where sign-ins come from: the cities users work in and travel to, with each one's network
//! (IP prefix, autonomous system, Conditional Access named location), and the shapes Graph sends
//! when it does not know where a sign-in came from.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// One city the tenant's users sign in from.
pub(super) struct Place {
    pub city: &'static str,
    pub state: &'static str,
    pub country: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    /// The first octets of the IPv4 addresses handed out there.
    pub ip_prefix: &'static str,
    /// The autonomous system of a local access provider.
    pub asn: u32,
    /// The Conditional Access named location (a region) the city falls in.
    pub region: &'static str,
}

pub(super) const PLACES: &[Place] = &[
    place(
        "Seattle",
        "Washington",
        "US",
        47.6062,
        -122.3321,
        "131.107",
        7922,
        "North America",
    ),
    place(
        "New York",
        "New York",
        "US",
        40.7128,
        -74.006,
        "20.81",
        701,
        "North America",
    ),
    place(
        "London", "England", "GB", 51.5072, -0.1276, "51.140", 2856, "Europe",
    ),
    place(
        "Paris",
        "Île-de-France",
        "FR",
        48.8566,
        2.3522,
        "90.84",
        3215,
        "Europe",
    ),
    place(
        "München", "Bayern", "DE", 48.1351, 11.582, "91.64", 3320, "Europe",
    ),
    place(
        "Zürich", "Zürich", "CH", 47.3769, 8.5417, "194.230", 3303, "Europe",
    ),
    place(
        "Tokyo",
        "Tokyo",
        "JP",
        35.6762,
        139.6503,
        "126.77",
        2516,
        "Asia Pacific",
    ),
    place(
        "São Paulo",
        "São Paulo",
        "BR",
        -23.5558,
        -46.6396,
        "177.71",
        28573,
        "South America",
    ),
    place(
        "Sydney",
        "New South Wales",
        "AU",
        -33.8688,
        151.2093,
        "203.2",
        1221,
        "Asia Pacific",
    ),
    place(
        "Bengaluru",
        "Karnataka",
        "IN",
        12.9716,
        77.5946,
        "49.207",
        24560,
        "Asia Pacific",
    ),
];

#[allow(clippy::too_many_arguments)]
const fn place(
    city: &'static str,
    state: &'static str,
    country: &'static str,
    latitude: f64,
    longitude: f64,
    ip_prefix: &'static str,
    asn: u32,
    region: &'static str,
) -> Place {
    Place {
        city,
        state,
        country,
        latitude,
        longitude,
        ip_prefix,
        asn,
        region,
    }
}

/// Microsoft's own network (Azure, and the IPv6 ranges Graph reports without a location).
pub(super) const MICROSOFT_ASN: u32 = 8075;

/// Where one sign-in came from.
pub(super) struct Origin {
    /// `location`, as Graph sends it.
    pub location: Value,
    pub ip: String,
    pub asn: u32,
    /// `networkLocationDetails`: the named locations the IP matched.
    pub networks: Value,
}

/// What Graph knows of a sign-in's location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Known {
    /// City, state, country and coordinates.
    City,
    /// City, state and country, `geoCoordinates` an empty object (as in the List signIns example
    /// of microsoftgraph/microsoft-graph-docs-contrib `api-reference/beta/api/signin-list.md`).
    CityWithoutCoordinates,
    /// Country only, `geoCoordinates` null.
    Country,
    /// Nothing: every member null, `geoCoordinates` too (a record of that shape is quoted in
    /// invictus-ir/Microsoft-Extractor-Suite#76).
    NullEverything,
    /// Nothing: empty strings and an empty `geoCoordinates` object.
    EmptyEverything,
    /// Nothing, but coordinates of exactly 0 and 0 ("Null Island", a point in the Atlantic; see
    /// issue 18): what a naive export puts on a map.
    ZeroCoordinates,
}

impl Known {
    /// How much is known, by a roll in `[0, 1)`: mostly the city.
    fn roll(roll: f64) -> Known {
        match roll {
            r if r < 0.030 => Known::NullEverything,
            r if r < 0.045 => Known::EmptyEverything,
            r if r < 0.060 => Known::ZeroCoordinates,
            r if r < 0.080 => Known::Country,
            r if r < 0.090 => Known::CityWithoutCoordinates,
            _ => Known::City,
        }
    }
}

/// A sign-in's origin: usually the home city (where the office's trusted named location is),
/// sometimes travel, sometimes a location Graph does not know.
pub(super) fn origin(home: usize, rng: &mut ChaCha8Rng) -> Origin {
    let known = Known::roll(rng.gen());
    let travelling = rng.gen_bool(0.15);
    let index = if travelling {
        rng.gen_range(0..PLACES.len())
    } else {
        home
    };
    let at = &PLACES[index];
    let unknown = matches!(
        known,
        Known::NullEverything | Known::EmptyEverything | Known::ZeroCoordinates
    );
    if unknown {
        // Graph reports no location for some Microsoft-routed IPv6 addresses.
        let ip = format!(
            "2a01:111:f400:{:x}::{:x}",
            rng.gen_range(0..0xffffu32),
            rng.gen_range(1..0xffffu32)
        );
        return Origin {
            location: unknown_location(known, rng),
            ip,
            asn: MICROSOFT_ASN,
            networks: json!([]),
        };
    }
    let ip = format!(
        "{}.{}.{}",
        at.ip_prefix,
        rng.gen_range(0..=255u8),
        rng.gen_range(1..=254u8)
    );
    let location = match known {
        Known::Country => json!({
            "city": "", "state": "", "countryOrRegion": at.country, "geoCoordinates": null
        }),
        Known::CityWithoutCoordinates => json!({
            "city": at.city, "state": at.state, "countryOrRegion": at.country, "geoCoordinates": {}
        }),
        _ => json!({
            "city": at.city, "state": at.state, "countryOrRegion": at.country,
            "geoCoordinates": {"altitude": null, "latitude": at.latitude, "longitude": at.longitude}
        }),
    };
    // The office network is a trusted named location; every city is in a regional one.
    let networks = if !travelling && rng.gen_bool(0.4) {
        json!([{"networkType": "trustedNamedLocation", "networkNames": ["Contoso offices"]}])
    } else if rng.gen_bool(0.5) {
        json!([{"networkType": "namedNetwork", "networkNames": [at.region]}])
    } else {
        json!([])
    };
    Origin {
        location,
        ip,
        asn: at.asn,
        networks,
    }
}

fn unknown_location(known: Known, rng: &mut ChaCha8Rng) -> Value {
    match known {
        Known::EmptyEverything => json!({
            "city": "", "state": "", "countryOrRegion": "", "geoCoordinates": {}
        }),
        Known::ZeroCoordinates => {
            let altitude = if rng.gen_bool(0.5) {
                json!(0.0)
            } else {
                Value::Null
            };
            json!({
                "city": "", "state": "", "countryOrRegion": "",
                "geoCoordinates": {"altitude": altitude, "latitude": 0.0, "longitude": 0.0}
            })
        }
        _ => json!({
            "city": null, "state": null, "countryOrRegion": null,
            "geoCoordinates": {"altitude": null, "latitude": null, "longitude": null}
        }),
    }
}

/// Where a workload (a service principal or managed identity) signs in from: Azure, whose
/// addresses Graph locates to a datacenter city, or not at all.
pub(super) fn azure_origin(index: usize, rng: &mut ChaCha8Rng) -> Origin {
    let mut origin = origin(index % PLACES.len(), rng);
    origin.asn = MICROSOFT_ASN;
    origin.networks = json!([]);
    origin
}
