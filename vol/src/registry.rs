//! [`Registry`]: vectors looked up by name, for code that refers to vectors
//! by name rather than by handle (a C API, a configuration file, a
//! command line).

use std::any::Any;
use std::collections::BTreeMap;

use crate::dense::{DenseVector, Values};
use crate::element::Element;
use crate::entries::SparseIndex;
use crate::error::VolError;
use crate::sparse::SparseVector;

/// A vector that can be kept in a [`Registry`]: [`DenseVector`] and
/// [`SparseVector`].
pub trait Named: Any + Send {
    /// The vector's name.
    fn vector_name(&self) -> &str;
    /// The vector's type, for messages.
    fn type_name(&self) -> &'static str;
}

impl<T: Element, S: Values<T> + Send + 'static> Named for DenseVector<T, S> {
    fn vector_name(&self) -> &str {
        self.name()
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

impl<I: SparseIndex, V: Element> Named for SparseVector<I, V> {
    fn vector_name(&self) -> &str {
        self.name()
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

struct Entry {
    type_name: &'static str,
    vector: Box<dyn Any + Send>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name)
    }
}

/// Vectors by name. Lookups of a name that was never registered give
/// [`VolError::UnknownVector`]; of a vector of another type,
/// [`VolError::WrongType`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// # let group = vol::Group::join(vol::Config::local(0, 1, port, "registry-doc"))?;
/// use vol::{DenseVector, Registry, VectorOptions, VolError};
/// let mut vectors = Registry::new();
/// vectors.insert(DenseVector::<f32>::new(&group, "w", 4, &VectorOptions::default())?)?;
/// vectors.get_mut::<DenseVector<f32>>("w")?.as_mut_slice()[0] = 1.0;
/// assert!(matches!(
///     vectors.get::<DenseVector<f32>>("bias"),
///     Err(VolError::UnknownVector { .. })
/// ));
/// assert!(matches!(
///     vectors.get::<DenseVector<f64>>("w"),
///     Err(VolError::WrongType { .. })
/// ));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Registry {
    vectors: BTreeMap<String, Entry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `vector` under its name; fails if the name is taken.
    pub fn insert<V: Named>(&mut self, vector: V) -> Result<(), VolError> {
        let name = vector.vector_name().to_owned();
        if self.vectors.contains_key(&name) {
            return Err(VolError::DuplicateVector { name });
        }
        self.vectors.insert(
            name,
            Entry {
                type_name: vector.type_name(),
                vector: Box::new(vector),
            },
        );
        Ok(())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.vectors.keys().cloned().collect()
    }

    fn unknown(&self, name: &str) -> VolError {
        VolError::UnknownVector {
            name: name.to_owned(),
            known: self.names(),
        }
    }

    /// The vector named `name`, as a `V`.
    pub fn get<V: Named>(&self, name: &str) -> Result<&V, VolError> {
        let e = self.vectors.get(name).ok_or_else(|| self.unknown(name))?;
        e.vector
            .downcast_ref::<V>()
            .ok_or_else(|| VolError::WrongType {
                name: name.to_owned(),
                expected: std::any::type_name::<V>(),
                found: e.type_name,
            })
    }

    /// The vector named `name`, as a mutable `V`.
    pub fn get_mut<V: Named>(&mut self, name: &str) -> Result<&mut V, VolError> {
        if !self.vectors.contains_key(name) {
            return Err(self.unknown(name));
        }
        match self.vectors.get_mut(name) {
            Some(e) => {
                let found = e.type_name;
                e.vector
                    .downcast_mut::<V>()
                    .ok_or_else(|| VolError::WrongType {
                        name: name.to_owned(),
                        expected: std::any::type_name::<V>(),
                        found,
                    })
            }
            None => Err(VolError::UnknownVector {
                name: name.to_owned(),
                known: Vec::new(),
            }),
        }
    }

    /// Removes and returns the vector named `name`.
    pub fn remove<V: Named>(&mut self, name: &str) -> Result<V, VolError> {
        self.get::<V>(name)?;
        let e = self
            .vectors
            .remove(name)
            .ok_or_else(|| self.unknown(name))?;
        e.vector
            .downcast::<V>()
            .map(|b| *b)
            .map_err(|_| VolError::WrongType {
                name: name.to_owned(),
                expected: std::any::type_name::<V>(),
                found: "another type",
            })
    }
}
