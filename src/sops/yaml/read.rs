//! Reading: a single-document YAML text whose root is a mapping, its plain scalars resolved as yaml.v3 resolves
//! them (the MAC covers the resolved form).

use std::collections::HashMap;

use anyhow::{Context, bail};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Tag};

use super::node::{Node, Scalar, resolve_plain};

/// Parses a single-document YAML text whose root is a mapping.
pub(crate) fn parse(text: &str) -> anyhow::Result<Vec<(String, Node)>> {
    let mut events = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, _span) = item.context("the file is not valid YAML")?;
        events.push(event);
    }
    let mut builder = Builder { events: events.into_iter(), anchors: HashMap::new() };
    let mut root = None;
    while let Some(event) = builder.events.next() {
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::StreamEnd => {}
            Event::DocumentStart(..) => {
                if root.is_some() {
                    bail!("the file holds more than one YAML document; a SOPS Secret is a single document");
                }
                let Some(first) = builder.next_node_event()? else {
                    bail!("the YAML document is empty");
                };
                root = Some(builder.node(first)?);
            }
            _ => {}
        }
    }
    match root {
        Some(Node::Map(entries)) => Ok(entries),
        Some(Node::Scalar(Scalar::Null)) | None => bail!("the YAML document is empty"),
        Some(_) => bail!("the YAML document's root is not a mapping"),
    }
}

struct Builder<'a> {
    events: std::vec::IntoIter<Event<'a>>,
    anchors: HashMap<usize, Node>,
}

impl<'a> Builder<'a> {
    /// The next event that starts or ends a node, skipping presentation-only events.
    fn next_node_event(&mut self) -> anyhow::Result<Option<Event<'a>>> {
        for event in self.events.by_ref() {
            match event {
                Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::SequenceEnd
                | Event::MappingStart(..)
                | Event::MappingEnd
                | Event::Alias(..)
                | Event::DocumentEnd => return Ok(Some(event)),
                Event::UnresolvedAlias(_) => bail!("the YAML uses an alias without an anchor"),
                _ => {}
            }
        }
        Ok(None)
    }

    fn node(&mut self, event: Event<'a>) -> anyhow::Result<Node> {
        let (node, anchor) = match event {
            Event::Scalar(value, style, anchor, tag) => (Node::Scalar(scalar(&value, style, tag.as_deref())?), anchor),
            Event::SequenceStart(_, anchor, _) => {
                let mut items = Vec::new();
                loop {
                    match self.next_node_event()? {
                        Some(Event::SequenceEnd) => break,
                        Some(event) => items.push(self.node(event)?),
                        None => bail!("the YAML ends inside a sequence"),
                    }
                }
                (Node::Seq(items), anchor)
            }
            Event::MappingStart(_, anchor, _) => {
                let mut entries: Vec<(String, Node)> = Vec::new();
                loop {
                    let key = match self.next_node_event()? {
                        Some(Event::MappingEnd) => break,
                        Some(event) => self.node(event)?,
                        None => bail!("the YAML ends inside a mapping"),
                    };
                    let Node::Scalar(Scalar::Str(key)) = key else {
                        bail!("the YAML has a mapping key that is not a string (sops supports string keys only)");
                    };
                    let Some(value_event) = self.next_node_event()? else {
                        bail!("the YAML ends inside a mapping");
                    };
                    let value = self.node(value_event)?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        bail!("the YAML has the mapping key `{key}` twice");
                    }
                    entries.push((key, value));
                }
                (Node::Map(entries), anchor)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().context("the YAML uses an alias before its anchor")?;
                return Ok(node);
            }
            _ => bail!("unexpected YAML structure"),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn scalar(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> anyhow::Result<Scalar> {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema_tag("str") {
            return Ok(Scalar::Str(value.to_owned()));
        }
        if tag.is_yaml_core_schema_tag("binary") {
            bail!("!!binary YAML values are not supported");
        }
        if !tag.is_yaml_core_schema() {
            // yaml.v3 leaves custom and non-specific (`!`) tags as strings.
            return Ok(Scalar::Str(value.to_owned()));
        }
        if style != ScalarStyle::Plain {
            bail!("explicitly tagged quoted YAML scalars are not supported");
        }
    }
    Ok(match style {
        ScalarStyle::Plain => resolve_plain(value),
        _ => Scalar::Str(value.to_owned()),
    })
}
