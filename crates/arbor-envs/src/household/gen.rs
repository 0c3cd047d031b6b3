//! Seeded generation of household games: a layout of rooms, receptacles, objects, and a goal
//! of one of ALFWorld's six task types.
use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::world::{Appliance, Goal, Object, Place, Receptacle, Room, World};

/// Size knobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HouseholdConfig {
    pub min_rooms: usize,
    pub max_rooms: usize,
    pub min_objects: usize,
    pub max_objects: usize,
    /// Steps an episode may take before it ends unsolved.
    pub max_episode_steps: usize,
}

impl Default for HouseholdConfig {
    fn default() -> Self {
        Self {
            min_rooms: 2,
            max_rooms: 4,
            min_objects: 8,
            max_objects: 14,
            max_episode_steps: 50,
        }
    }
}

impl HouseholdConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=4).contains(&self.min_rooms)
            || self.min_rooms > self.max_rooms
            || self.max_rooms > 4
        {
            return Err("need 2 <= min_rooms <= max_rooms <= 4".into());
        }
        if self.min_objects < 4 || self.min_objects > self.max_objects || self.max_objects > 40 {
            return Err("need 4 <= min_objects <= max_objects <= 40".into());
        }
        if self.max_episode_steps == 0 {
            return Err("max_episode_steps must be at least 1".into());
        }
        Ok(())
    }
}

/// (receptacle type, openable, appliance, how many at most)
type RecSpec = (&'static str, bool, Option<Appliance>, usize);

const KITCHEN: [RecSpec; 7] = [
    ("countertop", false, None, 2),
    ("fridge", true, Some(Appliance::Fridge), 1),
    ("microwave", true, Some(Appliance::Microwave), 1),
    ("sinkbasin", false, Some(Appliance::Sink), 1),
    ("cabinet", true, None, 3),
    ("drawer", true, None, 2),
    ("diningtable", false, None, 1),
];
const LIVINGROOM: [RecSpec; 4] = [
    ("sofa", false, None, 1),
    ("coffeetable", false, None, 1),
    ("shelf", false, None, 2),
    ("tvstand", false, None, 1),
];
const BEDROOM: [RecSpec; 4] = [
    ("bed", false, None, 1),
    ("desk", false, None, 1),
    ("sidetable", false, None, 1),
    ("drawer", true, None, 2),
];
const BATHROOM: [RecSpec; 3] = [
    ("countertop", false, None, 1),
    ("cabinet", true, None, 1),
    ("towelholder", false, None, 1),
];

/// Food and dishes (treatable), then things.
const TREATABLE: [&str; 8] = [
    "apple", "tomato", "potato", "egg", "mug", "cup", "plate", "bowl",
];
const THINGS: [&str; 6] = [
    "book",
    "cellphone",
    "keychain",
    "pen",
    "creditcard",
    "remotecontrol",
];

/// Generates a game from `seed`. The goal is never met at the start.
pub fn generate(cfg: &HouseholdConfig, seed: u64) -> World {
    let mut rng = StdRng::seed_from_u64(seed);
    let n_rooms = rng.gen_range(cfg.min_rooms..=cfg.max_rooms);
    // The kitchen (appliances) is always there; the room with the lamp (bedroom or living room)
    // too; then the rest.
    let mut names = vec![
        "kitchen",
        if rng.gen_bool(0.5) {
            "bedroom"
        } else {
            "livingroom"
        },
    ];
    let mut others: Vec<&str> = ["bedroom", "livingroom", "bathroom"]
        .into_iter()
        .filter(|n| !names.contains(n))
        .collect();
    others.shuffle(&mut rng);
    names.extend(others.into_iter().take(n_rooms - 2));
    names.shuffle(&mut rng);
    // A corridor: each room opens onto the next.
    let rooms: Vec<Room> = (0..names.len())
        .map(|i| {
            let mut exits = Vec::new();
            if i > 0 {
                exits.push(i - 1);
            }
            if i + 1 < names.len() {
                exits.push(i + 1);
            }
            Room {
                name: names[i].to_string(),
                exits,
            }
        })
        .collect();

    let mut receptacles = Vec::new();
    let mut numbering: BTreeMap<&str, usize> = BTreeMap::new();
    for (ri, name) in names.iter().enumerate() {
        let specs: &[RecSpec] = match *name {
            "kitchen" => &KITCHEN,
            "livingroom" => &LIVINGROOM,
            "bedroom" => &BEDROOM,
            _ => &BATHROOM,
        };
        for &(kind, openable, appliance, most) in specs {
            for _ in 0..rng.gen_range(1..=most) {
                let n = numbering.entry(kind).or_insert(0);
                *n += 1;
                receptacles.push(Receptacle {
                    name: format!("{kind} {n}"),
                    room: ri,
                    openable,
                    is_open: false,
                    appliance,
                });
            }
        }
    }
    let lamp_room = names
        .iter()
        .position(|n| *n == "bedroom" || *n == "livingroom")
        .expect("one is always present");
    let lamp_spots: Vec<usize> = (0..receptacles.len())
        .filter(|&r| receptacles[r].room == lamp_room && !receptacles[r].openable)
        .collect();
    let lamp = *lamp_spots
        .choose(&mut rng)
        .expect("bedroom and living room have open surfaces");

    // Objects on or in any receptacle but the appliances.
    let holders: Vec<usize> = (0..receptacles.len())
        .filter(|&r| {
            receptacles[r].appliance.is_none()
                || receptacles[r].appliance == Some(Appliance::Fridge)
        })
        .collect();
    let n_objects = rng.gen_range(cfg.min_objects..=cfg.max_objects);
    let mut objects: Vec<Object> = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut add = |kind: &str, place: usize, objects: &mut Vec<Object>| {
        let n = counts.entry(kind.to_string()).or_insert(0);
        *n += 1;
        objects.push(Object {
            name: format!("{kind} {n}"),
            kind: kind.to_string(),
            place: Place::In(place),
            treatable: TREATABLE.contains(&kind),
            hot: false,
            cool: false,
            clean: false,
        });
    };
    for _ in 0..n_objects {
        let kind = if rng.gen_bool(0.6) {
            TREATABLE.choose(&mut rng)
        } else {
            THINGS.choose(&mut rng)
        }
        .expect("non-empty");
        add(
            kind,
            *holders.choose(&mut rng).expect("non-empty"),
            &mut objects,
        );
    }

    // The goal: a task type, an object kind present in the house, a target receptacle.
    let task_type = rng.gen_range(0..6);
    let kinds_present: Vec<String> = {
        let mut k: Vec<String> = objects.iter().map(|o| o.kind.clone()).collect();
        k.sort();
        k.dedup();
        k
    };
    let needs_treatable = matches!(task_type, 2..=4);
    let candidates: Vec<&String> = kinds_present
        .iter()
        .filter(|k| !needs_treatable || TREATABLE.contains(&k.as_str()))
        .collect();
    let kind = match candidates.choose(&mut rng) {
        Some(k) => (*k).clone(),
        None => {
            let k = TREATABLE.choose(&mut rng).expect("non-empty").to_string();
            add(
                &k,
                *holders.choose(&mut rng).expect("non-empty"),
                &mut objects,
            );
            k
        }
    };
    if task_type == 5 && objects.iter().filter(|o| o.kind == kind).count() < 2 {
        add(
            &kind,
            *holders.choose(&mut rng).expect("non-empty"),
            &mut objects,
        );
    }
    let targets: Vec<usize> = (0..receptacles.len())
        .filter(|&r| receptacles[r].appliance.is_none())
        .collect();
    let target = *targets.choose(&mut rng).expect("non-empty");
    let goal = match task_type {
        0 => Goal::PickAndPlace {
            kind: kind.clone(),
            target,
        },
        1 => Goal::LookAtObjInLight { kind: kind.clone() },
        2 => Goal::PickCleanThenPlace {
            kind: kind.clone(),
            target,
        },
        3 => Goal::PickHeatThenPlace {
            kind: kind.clone(),
            target,
        },
        4 => Goal::PickCoolThenPlace {
            kind: kind.clone(),
            target,
        },
        _ => Goal::PickTwoObjAndPlace {
            kind: kind.clone(),
            target,
        },
    };
    // Never start solved: move goal objects out of the target.
    if let Some(t) = goal.target() {
        let elsewhere = *holders
            .iter()
            .find(|&&r| r != t)
            .expect("more than one holder");
        for o in objects
            .iter_mut()
            .filter(|o| o.kind == kind && o.place == Place::In(t))
        {
            o.place = Place::In(elsewhere);
        }
    }
    let start_room = rng.gen_range(0..rooms.len());
    World {
        rooms,
        receptacles,
        objects,
        room: start_room,
        at: None,
        holding: None,
        lamp,
        lamp_on: false,
        goal,
    }
}
