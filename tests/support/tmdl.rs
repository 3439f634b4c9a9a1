//! A small TMDL (Tabular Model Definition Language) parser: enough of the syntax to read a Power
//! BI semantic model folder and check it (tests/powerbi.rs). No maintained TMDL parser is
//! published on crates.io or npm; this one is tested on Microsoft's sample model
//! (tests/data/powerbi/tmdl-sample, microsoft/Analysis-Services).
//!
//! The syntax, from learn.microsoft.com/analysis-services/tmdl/tmdl-overview and the files Power
//! BI Desktop writes: one declaration per line, nesting by indentation of one tab per level;
//! `kind name` declares an object (names with spaces or symbols in single quotes, `''` escaping a
//! quote), optionally `= value` for its default property; `key: value` is a property, a bare
//! `key` a true flag; `key = value` an expression property. An expression whose `=` ends the line
//! continues on the following lines indented deeper (two levels below a named object, whose own
//! properties are one level below it; one level below an expression property), blank lines
//! included, or between two ```` ``` ```` lines. `///` lines describe the next declaration;
//! `ref kind name` references an object declared in another file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One declaration: an object (`table Sales`), a flag, or a property with an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `table`, `column`, `measure`, `partition`, `expression`, `annotation`, `ref`, …
    pub kind: String,
    /// The object's name, unquoted; for `ref table X`, `table X`'s name with `ref_kind` = table.
    pub name: Option<String>,
    pub ref_kind: Option<String>,
    /// The default property (`= …` on the declaration), expressions dedented.
    pub value: Option<String>,
    /// `key: value` properties; bare flags have the value "true".
    pub properties: BTreeMap<String, String>,
    /// Children: nested objects and expression properties (`source = …` is a child of kind
    /// `source` with that value).
    pub children: Vec<Node>,
    pub description: Option<String>,
    /// 1-based line of the declaration.
    pub line: usize,
}

impl Node {
    pub fn children_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.kind == kind)
    }

    pub fn child(&self, kind: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmdlError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TmdlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
    raw: &'a str,
}

/// Parses one TMDL file into its top-level declarations.
pub fn parse(file: &Path, source: &str) -> Result<Vec<Node>, TmdlError> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let lines: Vec<Line> = source
        .lines()
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let indent = raw.len() - raw.trim_start_matches('\t').len();
            Line {
                number: i + 1,
                indent,
                text: raw[indent..].trim_end(),
                raw,
            }
        })
        .collect();
    let mut parser = Parser { file, lines, at: 0 };
    parser.block(0)
}

struct Parser<'a> {
    file: &'a Path,
    lines: Vec<Line<'a>>,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> TmdlError {
        TmdlError {
            file: self.file.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// Declarations at `level` until a line indented less.
    fn block(&mut self, level: usize) -> Result<Vec<Node>, TmdlError> {
        let mut nodes = Vec::new();
        let mut description: Vec<String> = Vec::new();
        while let Some(line) = self.lines.get(self.at) {
            if line.text.is_empty() {
                self.at += 1;
                continue;
            }
            if line.indent < level {
                break;
            }
            if line.indent > level {
                return Err(self.error(
                    line.number,
                    format!("indented {} tabs where {level} were expected", line.indent),
                ));
            }
            if line.text.starts_with(' ') {
                return Err(self.error(
                    line.number,
                    "indentation must be tabs (one per level), not spaces",
                ));
            }
            if let Some(text) = line.text.strip_prefix("///") {
                description.push(text.strip_prefix(' ').unwrap_or(text).to_string());
                self.at += 1;
                continue;
            }
            let mut node = self.declaration(level)?;
            if !description.is_empty() {
                node.description = Some(std::mem::take(&mut description).join("\n"));
            }
            nodes.push(node);
        }
        if !description.is_empty() {
            let line = self.lines.get(self.at).map_or(0, |l| l.number);
            return Err(self.error(line, "/// description not followed by a declaration"));
        }
        Ok(nodes)
    }

    /// One declaration at `level` (the current line) and everything nested under it.
    fn declaration(&mut self, level: usize) -> Result<Node, TmdlError> {
        let line = &self.lines[self.at];
        let (number, text) = (line.number, line.text);
        let (keyword, rest) = split_identifier(text)
            .ok_or_else(|| self.error(number, format!("expected a keyword, found `{text}`")))?;
        let mut node = Node {
            kind: keyword.to_string(),
            name: None,
            ref_kind: None,
            value: None,
            properties: BTreeMap::new(),
            children: Vec::new(),
            description: None,
            line: number,
        };
        self.at += 1;
        if let Some(value) = rest.strip_prefix(':') {
            // `key: value` — a property of the enclosing object, returned as a leaf node.
            node.value = Some(value.trim().to_string());
            node.kind = format!("{keyword}:");
            return Ok(node);
        }
        let mut rest = rest.trim_start();
        if keyword == "ref" {
            let (kind, after) = split_identifier(rest)
                .ok_or_else(|| self.error(number, "`ref` needs an object kind"))?;
            node.ref_kind = Some(kind.to_string());
            rest = after.trim_start();
        }
        if !rest.is_empty() && !rest.starts_with('=') {
            let (name, after) = split_name(rest)
                .map_err(|message| self.error(number, format!("{message} in `{text}`")))?;
            node.name = Some(name);
            rest = after.trim_start();
        }
        if let Some(value) = rest.strip_prefix('=') {
            // A named object's own properties sit one level deeper, so its expression starts two
            // levels deeper (`measure M =`); an expression property has no properties, so its
            // expression only has to be deeper than it (`source =`, `statusExpression =`).
            let deeper = if node.name.is_some() {
                level + 2
            } else {
                level + 1
            };
            node.value = Some(self.expression(deeper, number, value.trim())?);
        } else if !rest.is_empty() {
            return Err(self.error(number, format!("unexpected `{rest}` in `{text}`")));
        }
        for child in self.block(level + 1)? {
            if let Some(key) = child.kind.strip_suffix(':') {
                node.properties
                    .insert(key.to_string(), child.value.unwrap_or_default());
            } else if child.name.is_none()
                && child.value.is_none()
                && child.children.is_empty()
                && child.properties.is_empty()
            {
                node.properties.insert(child.kind, "true".to_string());
            } else {
                node.children.push(child);
            }
        }
        Ok(node)
    }

    /// The value after `=`: the rest of the line, plus the following lines indented at least
    /// `deeper` tabs (blank lines between them included), or a ```` ``` ```` block; the lines
    /// dedented by their common indentation.
    fn expression(
        &mut self,
        deeper: usize,
        number: usize,
        first: &str,
    ) -> Result<String, TmdlError> {
        let mut block: Vec<&str> = Vec::new();
        if first == "```" {
            loop {
                let Some(line) = self.lines.get(self.at) else {
                    return Err(self.error(number, "``` block never closed"));
                };
                self.at += 1;
                if line.text == "```" {
                    break;
                }
                block.push(line.raw);
            }
        } else {
            let mut end = self.at;
            let mut i = self.at;
            while let Some(line) = self.lines.get(i) {
                i += 1;
                if line.text.is_empty() {
                    continue;
                }
                if line.indent < deeper {
                    break;
                }
                end = i;
            }
            block.extend(self.lines[self.at..end].iter().map(|l| l.raw));
            self.at = end;
        }
        let common = block
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches('\t').len())
            .min()
            .unwrap_or(0);
        let mut out: Vec<String> = Vec::new();
        if !first.is_empty() && first != "```" {
            out.push(first.to_string());
        }
        out.extend(block.iter().map(|l| dedent(l, common)));
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        if out.is_empty() {
            return Err(self.error(number, "`=` with no expression after it"));
        }
        Ok(out.join("\n"))
    }
}

fn dedent(raw: &str, tabs: usize) -> String {
    let strip = raw.len() - raw.trim_start_matches('\t').len();
    raw[strip.min(tabs)..].trim_end().to_string()
}

/// `keyword rest` → (keyword, rest); a keyword is letters, digits and `_`.
fn split_identifier(text: &str) -> Option<(&str, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| text.split_at(end))
}

/// An object name at the start of `text`: `'quoted ''name'''` or a run of characters up to a
/// space, `=` or `:`… unquoted names may contain `-` and `.` (`RAW-Sales`, GUIDs).
pub fn split_name(text: &str) -> Result<(String, &str), String> {
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    chars.next();
                    name.push('\'');
                } else {
                    return Ok((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return Err("unterminated quoted name".to_string());
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(text.len());
    if end == 0 {
        return Err("expected a name".to_string());
    }
    Ok((text[..end].to_string(), &text[end..]))
}

/// A `Table.Column` reference (`Sales.'Order Date'`), as relationships write them.
pub fn split_column_ref(text: &str) -> Option<(String, String)> {
    let (table, rest) = if text.starts_with('\'') {
        split_name(text).ok()?
    } else {
        let dot = text.find('.')?;
        (text[..dot].to_string(), &text[dot..])
    };
    let column = rest.strip_prefix('.')?;
    let (column, after) = split_name(column).ok()?;
    after.trim().is_empty().then_some((table, column))
}

/// A semantic model as the checks see it.
#[derive(Debug, Default)]
pub struct Model {
    pub tables: BTreeMap<String, Table>,
    /// Shared M expressions (parameters and queries): name → M.
    pub expressions: BTreeMap<String, String>,
    /// (from table, from column, to table, to column)
    pub relationships: Vec<(String, String, String, String)>,
    /// `ref table X` lines of model.tmdl.
    pub table_refs: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Table {
    pub columns: BTreeMap<String, Column>,
    pub measures: BTreeMap<String, String>,
    pub partitions: Vec<Partition>,
    /// The incremental refresh policy's properties and `sourceExpression`, if any.
    pub refresh_policy: Option<BTreeMap<String, String>>,
}

#[derive(Debug)]
pub struct Column {
    pub data_type: Option<String>,
    pub source_column: Option<String>,
}

#[derive(Debug)]
pub struct Partition {
    pub name: String,
    /// `m`, `calculated`, …
    pub kind: String,
    pub source: Option<String>,
}

/// Reads every `*.tmdl` file under a semantic model's `definition/` folder.
pub fn load_model(definition: &Path) -> Result<Model, Vec<TmdlError>> {
    let mut files = Vec::new();
    collect_tmdl(definition, &mut files);
    files.sort();
    let mut model = Model::default();
    let mut errors = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(TmdlError {
                    file: file.clone(),
                    line: 0,
                    message: e.to_string(),
                });
                continue;
            }
        };
        match parse(&file, &text) {
            Ok(nodes) => {
                for node in nodes {
                    if let Err(e) = add_to_model(&mut model, &node) {
                        errors.push(TmdlError {
                            file: file.clone(),
                            line: node.line,
                            message: e,
                        });
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(model)
    } else {
        Err(errors)
    }
}

fn collect_tmdl(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_tmdl(&path, out);
        } else if path.extension().is_some_and(|e| e == "tmdl") {
            out.push(path);
        }
    }
}

fn add_to_model(model: &mut Model, node: &Node) -> Result<(), String> {
    let name = || {
        node.name
            .clone()
            .ok_or(format!("`{}` without a name", node.kind))
    };
    match node.kind.as_str() {
        "table" => {
            model.tables.insert(name()?, table(node)?);
        }
        "expression" => {
            let value = node.value.clone().ok_or("expression without `=`")?;
            model.expressions.insert(name()?, value);
        }
        "relationship" => {
            let end = |key: &str| {
                let text = node
                    .properties
                    .get(key)
                    .ok_or(format!("relationship without {key}"))?;
                split_column_ref(text).ok_or(format!("{key}: `{text}` is not Table.Column"))
            };
            let (from_table, from_column) = end("fromColumn")?;
            let (to_table, to_column) = end("toColumn")?;
            model
                .relationships
                .push((from_table, from_column, to_table, to_column));
        }
        "model" => {
            for child in &node.children {
                add_to_model(model, child)?;
            }
        }
        "ref" if node.ref_kind.as_deref() == Some("table") => model.table_refs.push(name()?),
        _ => {}
    }
    Ok(())
}

fn table(node: &Node) -> Result<Table, String> {
    let mut table = Table::default();
    for child in &node.children {
        let name = || {
            child.name.clone().ok_or(format!(
                "line {}: `{}` without a name",
                child.line, child.kind
            ))
        };
        match child.kind.as_str() {
            "column" => {
                table.columns.insert(
                    name()?,
                    Column {
                        data_type: child.properties.get("dataType").cloned(),
                        source_column: child.properties.get("sourceColumn").cloned(),
                    },
                );
            }
            "measure" => {
                let expression = child.value.clone().ok_or(format!(
                    "line {}: measure without an expression",
                    child.line
                ))?;
                table.measures.insert(name()?, expression);
            }
            "partition" => table.partitions.push(Partition {
                name: name()?,
                kind: child.value.clone().unwrap_or_default(),
                source: child.child("source").and_then(|s| s.value.clone()),
            }),
            "refreshPolicy" => {
                let mut policy = child.properties.clone();
                if let Some(source) = child
                    .child("sourceExpression")
                    .and_then(|s| s.value.clone())
                {
                    policy.insert("sourceExpression".to_string(), source);
                }
                table.refresh_policy = Some(policy);
            }
            _ => {}
        }
    }
    Ok(table)
}
