//! The household world: rooms, receptacles, objects, and the rules of each command.
use serde::{Deserialize, Serialize};

/// What a receptacle can do to an object besides holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Appliance {
    Fridge,
    Microwave,
    Sink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receptacle {
    /// "cabinet 2"
    pub name: String,
    pub room: usize,
    pub openable: bool,
    pub is_open: bool,
    pub appliance: Option<Appliance>,
}

impl Receptacle {
    pub fn accessible(&self) -> bool {
        !self.openable || self.is_open
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Place {
    In(usize),
    Held,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// "apple 1"
    pub name: String,
    /// "apple"
    pub kind: String,
    pub place: Place,
    /// Food and dishes can be heated, cooled and cleaned.
    pub treatable: bool,
    pub hot: bool,
    pub cool: bool,
    pub clean: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub name: String,
    pub exits: Vec<usize>,
}

/// The six ALFWorld task types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Goal {
    PickAndPlace { kind: String, target: usize },
    LookAtObjInLight { kind: String },
    PickCleanThenPlace { kind: String, target: usize },
    PickHeatThenPlace { kind: String, target: usize },
    PickCoolThenPlace { kind: String, target: usize },
    PickTwoObjAndPlace { kind: String, target: usize },
}

impl Goal {
    pub fn kind(&self) -> &str {
        match self {
            Goal::PickAndPlace { kind, .. }
            | Goal::LookAtObjInLight { kind }
            | Goal::PickCleanThenPlace { kind, .. }
            | Goal::PickHeatThenPlace { kind, .. }
            | Goal::PickCoolThenPlace { kind, .. }
            | Goal::PickTwoObjAndPlace { kind, .. } => kind,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Goal::PickAndPlace { .. } => "pick_and_place_simple",
            Goal::LookAtObjInLight { .. } => "look_at_obj_in_light",
            Goal::PickCleanThenPlace { .. } => "pick_clean_then_place_in_recep",
            Goal::PickHeatThenPlace { .. } => "pick_heat_then_place_in_recep",
            Goal::PickCoolThenPlace { .. } => "pick_cool_then_place_in_recep",
            Goal::PickTwoObjAndPlace { .. } => "pick_two_obj_and_place",
        }
    }

    pub fn target(&self) -> Option<usize> {
        match self {
            Goal::LookAtObjInLight { .. } => None,
            Goal::PickAndPlace { target, .. }
            | Goal::PickCleanThenPlace { target, .. }
            | Goal::PickHeatThenPlace { target, .. }
            | Goal::PickCoolThenPlace { target, .. }
            | Goal::PickTwoObjAndPlace { target, .. } => Some(*target),
        }
    }
}

/// The whole state of one game.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct World {
    pub rooms: Vec<Room>,
    pub receptacles: Vec<Receptacle>,
    pub objects: Vec<Object>,
    pub room: usize,
    /// The receptacle the agent stands at, if any.
    pub at: Option<usize>,
    pub holding: Option<usize>,
    /// The receptacle holding the desk lamp.
    pub lamp: usize,
    pub lamp_on: bool,
    pub goal: Goal,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Look,
    Inventory,
    Help,
    GoTo(String),
    Open(String),
    Close(String),
    Take(String, Option<String>),
    Put(String, String),
    Heat(String, String),
    Cool(String, String),
    Clean(String, String),
    Use(String),
}

pub const COMMANDS: &str = "look, inventory, go to <room or receptacle>, open <r>, close <r>, take <object> from <r>, \
put <object> in/on <r>, heat <object> with microwave N, cool <object> with fridge N, clean <object> with sinkbasin N, use desklamp 1";

impl Command {
    pub fn parse(input: &str) -> Option<Command> {
        let s = input
            .trim()
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let s = s.trim_end_matches('.');
        let two = |rest: &str, sep: &[&str]| -> Option<(String, String)> {
            sep.iter()
                .find_map(|k| rest.split_once(k))
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        };
        Some(match s {
            "look" | "look around" => Command::Look,
            "inventory" | "i" => Command::Inventory,
            "help" => Command::Help,
            _ => {
                if let Some(r) = s.strip_prefix("go to ") {
                    Command::GoTo(r.trim_start_matches("the ").to_string())
                } else if let Some(r) = s.strip_prefix("open ") {
                    Command::Open(r.to_string())
                } else if let Some(r) = s.strip_prefix("close ") {
                    Command::Close(r.to_string())
                } else if let Some(r) = s.strip_prefix("take ") {
                    match two(r, &[" from "]) {
                        Some((o, from)) => Command::Take(o, Some(from)),
                        None => Command::Take(r.to_string(), None),
                    }
                } else if let Some(r) = s.strip_prefix("put ") {
                    let (o, to) = two(r, &[" in/on ", " into ", " in ", " on "])?;
                    Command::Put(o, to)
                } else if let Some(r) = s.strip_prefix("heat ") {
                    let (o, w) = two(r, &[" with "])?;
                    Command::Heat(o, w)
                } else if let Some(r) = s.strip_prefix("cool ") {
                    let (o, w) = two(r, &[" with "])?;
                    Command::Cool(o, w)
                } else if let Some(r) = s.strip_prefix("clean ") {
                    let (o, w) = two(r, &[" with "])?;
                    Command::Clean(o, w)
                } else if let Some(r) = s.strip_prefix("use ") {
                    Command::Use(r.to_string())
                } else {
                    return None;
                }
            }
        })
    }
}

const NOTHING: &str = "Nothing happens.";

fn list(names: &[&str]) -> String {
    match names.len() {
        0 => "nothing".to_string(),
        1 => format!("a {}", names[0]),
        _ => {
            let (last, rest) = names.split_last().expect("len > 1");
            format!(
                "{}, and a {}",
                rest.iter()
                    .map(|n| format!("a {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                last
            )
        }
    }
}

impl World {
    fn recep(&self, name: &str) -> Option<usize> {
        self.receptacles.iter().position(|r| r.name == name)
    }

    fn object(&self, name: &str) -> Option<usize> {
        self.objects.iter().position(|o| o.name == name)
    }

    pub fn contents(&self, r: usize) -> Vec<&str> {
        self.objects
            .iter()
            .filter(|o| o.place == Place::In(r))
            .map(|o| o.name.as_str())
            .collect()
    }

    /// What the agent sees at receptacle `r`.
    fn describe_recep(&self, r: usize) -> String {
        let rc = &self.receptacles[r];
        let mut s = String::new();
        if r == self.lamp {
            s.push_str(&format!(
                "A desklamp 1 stands here ({}). ",
                if self.lamp_on { "on" } else { "off" }
            ));
        }
        if !rc.accessible() {
            s.push_str(&format!("The {} is closed.", rc.name));
        } else {
            let inside = if rc.openable { "In it" } else { "On it" };
            let open = if rc.openable {
                format!("The {} is open. ", rc.name)
            } else {
                String::new()
            };
            s.push_str(&format!(
                "{open}{inside}, you see {}.",
                list(&self.contents(r))
            ));
        }
        s
    }

    pub fn describe_room(&self) -> String {
        let room = &self.rooms[self.room];
        let here: Vec<&str> = self
            .receptacles
            .iter()
            .filter(|r| r.room == self.room)
            .map(|r| r.name.as_str())
            .collect();
        let exits: Vec<&str> = room
            .exits
            .iter()
            .map(|&e| self.rooms[e].name.as_str())
            .collect();
        format!(
            "You are in the {}. Looking around, you see {}. Exits lead to: {}.",
            room.name,
            list(&here),
            exits.join(", ")
        )
    }

    pub fn task_text(&self) -> String {
        let t = |r: usize| self.receptacles[r].name.clone();
        match &self.goal {
            Goal::PickAndPlace { kind, target } => format!("put a {kind} in/on {}.", t(*target)),
            Goal::LookAtObjInLight { kind } => format!("look at a {kind} under the desklamp."),
            Goal::PickCleanThenPlace { kind, target } => {
                format!("put a clean {kind} in/on {}.", t(*target))
            }
            Goal::PickHeatThenPlace { kind, target } => {
                format!("put a hot {kind} in/on {}.", t(*target))
            }
            Goal::PickCoolThenPlace { kind, target } => {
                format!("put a cool {kind} in/on {}.", t(*target))
            }
            Goal::PickTwoObjAndPlace { kind, target } => {
                format!("put two {kind} in/on {}.", t(*target))
            }
        }
    }

    pub fn intro(&self) -> String {
        format!(
            "{}\nYour task is to: {}",
            self.describe_room(),
            self.task_text()
        )
    }

    pub fn goal_met(&self) -> bool {
        let kind = self.goal.kind();
        let count = |t: usize, f: &dyn Fn(&Object) -> bool| {
            self.objects
                .iter()
                .filter(|o| o.kind == kind && o.place == Place::In(t) && f(o))
                .count()
        };
        match &self.goal {
            Goal::PickAndPlace { target, .. } => count(*target, &|_| true) >= 1,
            Goal::PickCleanThenPlace { target, .. } => count(*target, &|o| o.clean) >= 1,
            Goal::PickHeatThenPlace { target, .. } => count(*target, &|o| o.hot) >= 1,
            Goal::PickCoolThenPlace { target, .. } => count(*target, &|o| o.cool) >= 1,
            Goal::PickTwoObjAndPlace { target, .. } => count(*target, &|_| true) >= 2,
            Goal::LookAtObjInLight { .. } => {
                self.lamp_on
                    && self.at == Some(self.lamp)
                    && self.holding.is_some_and(|h| self.objects[h].kind == kind)
            }
        }
    }

    /// Applies one command and returns the observation. Unknown or impossible commands change
    /// nothing.
    pub fn apply(&mut self, input: &str) -> String {
        let Some(cmd) = Command::parse(input) else {
            return format!(
                "I don't understand \"{}\". Commands: {COMMANDS}.",
                input.trim()
            );
        };
        match cmd {
            Command::Help => format!("Commands: {COMMANDS}."),
            Command::Look => match self.at {
                Some(r) => format!(
                    "You are at {} in the {}. {}",
                    self.receptacles[r].name,
                    self.rooms[self.room].name,
                    self.describe_recep(r)
                ),
                None => self.describe_room(),
            },
            Command::Inventory => match self.holding {
                Some(h) => format!("You are carrying: a {}.", self.objects[h].name),
                None => "You are not carrying anything.".to_string(),
            },
            Command::GoTo(target) => {
                if let Some(room) = self.rooms.iter().position(|r| r.name == target) {
                    if room == self.room {
                        self.at = None;
                        return self.describe_room();
                    }
                    if !self.rooms[self.room].exits.contains(&room) {
                        return format!("You can't get to the {target} from here.");
                    }
                    self.room = room;
                    self.at = None;
                    return self.describe_room();
                }
                match self.recep(&target) {
                    Some(r) if self.receptacles[r].room == self.room => {
                        self.at = Some(r);
                        format!("You arrive at {}. {}", target, self.describe_recep(r))
                    }
                    Some(_) => format!("The {target} is not in this room."),
                    None => NOTHING.to_string(),
                }
            }
            Command::Open(name) | Command::Close(name) if self.recep(&name).is_none() => {
                NOTHING.to_string()
            }
            Command::Open(name) => {
                let r = self.recep(&name).expect("checked");
                if self.at != Some(r)
                    || !self.receptacles[r].openable
                    || self.receptacles[r].is_open
                {
                    return NOTHING.to_string();
                }
                self.receptacles[r].is_open = true;
                format!("You open the {name}. {}", self.describe_recep(r))
            }
            Command::Close(name) => {
                let r = self.recep(&name).expect("checked");
                if self.at != Some(r)
                    || !self.receptacles[r].openable
                    || !self.receptacles[r].is_open
                {
                    return NOTHING.to_string();
                }
                self.receptacles[r].is_open = false;
                format!("You close the {name}.")
            }
            Command::Take(obj, from) => {
                let (Some(o), Some(r)) = (self.object(&obj), self.at) else {
                    return NOTHING.to_string();
                };
                let from_ok = from
                    .as_deref()
                    .is_none_or(|f| f == self.receptacles[r].name);
                if self.holding.is_some()
                    || !from_ok
                    || self.objects[o].place != Place::In(r)
                    || !self.receptacles[r].accessible()
                {
                    return NOTHING.to_string();
                }
                self.objects[o].place = Place::Held;
                self.holding = Some(o);
                format!(
                    "You pick up the {obj} from the {}.",
                    self.receptacles[r].name
                )
            }
            Command::Put(obj, to) => {
                let (Some(o), Some(r)) = (self.object(&obj), self.at) else {
                    return NOTHING.to_string();
                };
                if self.holding != Some(o)
                    || self.receptacles[r].name != to
                    || !self.receptacles[r].accessible()
                {
                    return NOTHING.to_string();
                }
                self.objects[o].place = Place::In(r);
                self.holding = None;
                format!("You put the {obj} in/on the {to}.")
            }
            Command::Heat(obj, with) => self.treat(&obj, &with, Appliance::Microwave),
            Command::Cool(obj, with) => self.treat(&obj, &with, Appliance::Fridge),
            Command::Clean(obj, with) => self.treat(&obj, &with, Appliance::Sink),
            Command::Use(thing) => {
                if thing != "desklamp 1" || self.at != Some(self.lamp) {
                    return NOTHING.to_string();
                }
                self.lamp_on = !self.lamp_on;
                format!(
                    "You turn {} the desklamp 1.",
                    if self.lamp_on { "on" } else { "off" }
                )
            }
        }
    }

    fn treat(&mut self, obj: &str, with: &str, kind: Appliance) -> String {
        let (Some(o), Some(r)) = (self.object(obj), self.at) else {
            return NOTHING.to_string();
        };
        let rc = &self.receptacles[r];
        if self.holding != Some(o)
            || rc.name != with
            || rc.appliance != Some(kind)
            || !self.objects[o].treatable
        {
            return NOTHING.to_string();
        }
        let ob = &mut self.objects[o];
        let verb = match kind {
            Appliance::Microwave => {
                ob.hot = true;
                ob.cool = false;
                "heat"
            }
            Appliance::Fridge => {
                ob.cool = true;
                ob.hot = false;
                "cool"
            }
            Appliance::Sink => {
                ob.clean = true;
                "clean"
            }
        };
        format!("You {verb} the {obj} using the {with}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(
            Command::parse("  Go to  the Kitchen "),
            Some(Command::GoTo("kitchen".into()))
        );
        assert_eq!(
            Command::parse("take apple 1 from fridge 1"),
            Some(Command::Take("apple 1".into(), Some("fridge 1".into())))
        );
        assert_eq!(
            Command::parse("put apple 1 in/on countertop 2"),
            Some(Command::Put("apple 1".into(), "countertop 2".into()))
        );
        assert_eq!(
            Command::parse("put mug 1 on shelf 1"),
            Some(Command::Put("mug 1".into(), "shelf 1".into()))
        );
        assert_eq!(
            Command::parse("heat egg 2 with microwave 1"),
            Some(Command::Heat("egg 2".into(), "microwave 1".into()))
        );
        assert_eq!(Command::parse("dance"), None);
        assert_eq!(Command::parse("put mug 1"), None);
    }
}
